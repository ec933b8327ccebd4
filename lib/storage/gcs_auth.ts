/**
 * Credentials for real GCS, found the way Google's clients find Application Default Credentials — but looked
 * for first, so that "no credentials" is one line naming both ways out at once, not a library warning
 * (gcp-metadata's MetadataLookupWarning) followed by half a minute of retries:
 *
 * 1. `GOOGLE_APPLICATION_CREDENTIALS` (a key file; it must exist);
 * 2. the gcloud ADC file (`$CLOUDSDK_CONFIG` or `~/.config/gcloud` / `application_default_credentials.json`);
 * 3. the GCE/GKE metadata server (`GCE_METADATA_HOST`, default 169.254.169.254), probed for 1.5 s: tokens and
 *    the VM's access scopes come from it directly (the scopes decide the hint for a refused write).
 *
 * Files (1, 2) are turned into tokens by google-auth-library.
 *
 * @example
 * ```ts ignore
 * // ignore: needs Application Default Credentials (a key file, gcloud's ADC file or a VM's service account)
 * import { findCredentials } from "./gcs_auth.ts";
 * const creds = await findCredentials(); // throws one clear ActshardError when there are none
 * console.log(creds.source, await creds.token());
 * ```
 */
import { join } from "node:path";
import { ActshardError } from "../errors.ts";
import { isFile } from "../util/is_file.ts";

/** Where credentials came from, and a token source. */
export interface Credentials {
  source: "key-file" | "gcloud-adc" | "metadata-server";
  /** On a VM: the service account's OAuth scopes (a write needs devstorage.read_write, full_control or cloud-platform). */
  vmScopes?: string[];
  token(): Promise<string>;
}

const SCOPE = "https://www.googleapis.com/auth/devstorage.read_write";
const WRITE_SCOPES = [
  SCOPE,
  "https://www.googleapis.com/auth/devstorage.full_control",
  "https://www.googleapis.com/auth/cloud-platform",
];

/** Whether VM scopes allow writing to GCS. */
export function scopesAllowWrite(scopes: string[] | undefined): boolean {
  return scopes === undefined || scopes.some((s) => WRITE_SCOPES.includes(s));
}

/** The hint for a missing or refused credential, fitting where we run. */
export const NO_CREDENTIALS_HINT =
  "run `gcloud auth application-default login` (or set GOOGLE_APPLICATION_CREDENTIALS to a key file); " +
  "to use the emulator instead, set STORAGE_EMULATOR_HOST=http://127.0.0.1:4443 (`deno task gcs-emulator`)";

function env(name: string): string | undefined {
  try {
    return Deno.env.get(name) || undefined;
  } catch {
    return undefined;
  }
}

/** Find credentials (see the module doc), or throw one line naming both ways out. */
export async function findCredentials(): Promise<Credentials> {
  const keyFile = env("GOOGLE_APPLICATION_CREDENTIALS");
  if (keyFile) {
    if (!(await isFile(keyFile))) {
      throw new ActshardError("GOOGLE_APPLICATION_CREDENTIALS names a file that does not exist", {
        where: keyFile,
        kind: "remote",
        hint:
          "point it at a service-account key file, or unset it and run `gcloud auth application-default login`",
      });
    }
    return { source: "key-file", token: await libraryToken(keyFile) };
  }
  const gcloudDir = env("CLOUDSDK_CONFIG") ?? join(env("HOME") ?? "/", ".config", "gcloud");
  const adc = join(gcloudDir, "application_default_credentials.json");
  if (await isFile(adc)) return { source: "gcloud-adc", token: await libraryToken(adc) };
  const vm = await probeMetadataServer();
  if (vm) return vm;
  throw new ActshardError("no Google credentials found (no key file, no gcloud login, not on a GCE/GKE VM)", {
    kind: "remote",
    hint: NO_CREDENTIALS_HINT,
  });
}

async function libraryToken(file: string): Promise<() => Promise<string>> {
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(await Deno.readTextFile(file));
  } catch (e) {
    throw new ActshardError(`not a readable JSON credentials file: ${(e as Error).message.split("\n")[0]}`, {
      where: file,
      kind: "remote",
      hint: NO_CREDENTIALS_HINT,
    });
  }
  const lib = await import("google-auth-library");
  // The per-type constructors: GoogleAuth's `keyFilename`/`credentials` options print a deprecation warning.
  let client: { getAccessToken(): Promise<{ token?: string | null }> };
  const str = (k: string) => (typeof json[k] === "string" ? json[k] as string : undefined);
  if (json.type === "service_account") {
    client = new lib.JWT({
      email: str("client_email"),
      key: str("private_key"),
      keyId: str("private_key_id"),
      scopes: [SCOPE],
    });
  } else if (json.type === "authorized_user") {
    client = new lib.UserRefreshClient({
      clientId: str("client_id"),
      clientSecret: str("client_secret"),
      refreshToken: str("refresh_token"),
    });
  } else if (typeof json.type === "string") {
    client = await new lib.GoogleAuth({ credentials: json, scopes: [SCOPE] }).getClient();
  } else {
    throw new ActshardError('not a Google credentials file (no "type")', {
      where: file,
      kind: "remote",
      hint: NO_CREDENTIALS_HINT,
    });
  }
  return async () => {
    const t = (await client.getAccessToken()).token;
    if (!t) throw new Error("the credentials gave no access token");
    return t;
  };
}

/** The metadata server's token source and scopes, or null when there is none (not on a VM). */
async function probeMetadataServer(): Promise<Credentials | null> {
  const host = env("GCE_METADATA_HOST") ?? env("GCE_METADATA_IP") ?? "169.254.169.254";
  const base = `http://${host}/computeMetadata/v1/instance/service-accounts/default`;
  const get = async (path: string, ms: number): Promise<Response> => {
    const ctl = new AbortController();
    const t = setTimeout(() => ctl.abort(), ms);
    try {
      return await fetch(`${base}/${path}`, { headers: { "Metadata-Flavor": "Google" }, signal: ctl.signal });
    } finally {
      clearTimeout(t);
    }
  };
  let scopes: string[];
  try {
    const r = await get("scopes", 1500);
    if (!r.ok || r.headers.get("metadata-flavor") !== "Google") {
      await r.body?.cancel();
      return null;
    }
    scopes = (await r.text()).split("\n").map((s) => s.trim()).filter(Boolean);
  } catch {
    return null;
  }
  let cached: { token: string; until: number } | null = null;
  return {
    source: "metadata-server",
    vmScopes: scopes,
    async token() {
      if (cached && Date.now() < cached.until) return cached.token;
      const r = await get("token", 30_000);
      if (!r.ok) throw new Error(`metadata server token: HTTP ${r.status}`);
      const j = await r.json() as { access_token: string; expires_in: number };
      cached = { token: j.access_token, until: Date.now() + Math.max(0, j.expires_in - 60) * 1000 };
      return j.access_token;
    },
  };
}
