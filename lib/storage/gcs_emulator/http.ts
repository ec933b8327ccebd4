/**
 * Response and query helpers shared by the GCS emulator's routes: JSON bodies, GCS-shaped error bodies, and the
 * generation/metageneration preconditions of a request's query.
 */
import type { GcsHttpError, Preconditions } from "./store.ts";

/** The preconditions (`ifGenerationMatch`, …) in a request's query. */
export function preconditions(q: URLSearchParams): Preconditions {
  return {
    ifGenerationMatch: q.get("ifGenerationMatch"),
    ifGenerationNotMatch: q.get("ifGenerationNotMatch"),
    ifMetagenerationMatch: q.get("ifMetagenerationMatch"),
    ifMetagenerationNotMatch: q.get("ifMetagenerationNotMatch"),
  };
}

/** A JSON response. */
export function json(v: unknown, status = 200): Response {
  return new Response(JSON.stringify(v), {
    status,
    headers: { "content-type": "application/json; charset=UTF-8" },
  });
}

/** A GCS JSON-API error body for `e` with its status. */
export function errorResponse(e: GcsHttpError): Response {
  return json(
    {
      error: {
        code: e.status,
        message: e.message,
        errors: [{ message: e.message, domain: "global", reason: e.reason }],
      },
    },
    e.status,
  );
}
