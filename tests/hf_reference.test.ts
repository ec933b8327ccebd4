/**
 * The reference interpreter (the oracle the backend tests compare against) checked against the real thing: Hugging
 * Face transformers' `Qwen2ForCausalLM`, loaded in float64 from a generated tiny checkpoint (GQA ratio 3, 3
 * layers, untied), `hidden_states[i + 1]` for the inner blocks and a forward hook on the last block (HF's last
 * hidden state has the final norm applied). Within 1e-6 relative: float32 rounding of our output. This replaced a
 * numpy port of `modeling_qwen2`; the end-to-end comparison (extract → shards vs HF, many shapes, 1e-4) is
 * python/tests/test_hf_oracle.py. Skipped with a note without torch/transformers outside CI.
 */
import { assertClose } from "./_assert.ts";
import { PYTHON, pythonTest } from "./_python.ts";
import { tempDir } from "./_shared.ts";
import { referenceForward } from "../lib/model/reference.ts";
import { writeTinyModel } from "../lib/model/tiny.ts";

const HF_FORWARD = `
import json, sys, torch
from transformers import Qwen2ForCausalLM
m = Qwen2ForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float64, attn_implementation="eager").eval()
ids = torch.tensor([json.loads(sys.argv[2])])
last = {}
m.model.layers[-1].register_forward_hook(lambda _m, _i, o: last.__setitem__("h", o[0] if isinstance(o, tuple) else o))
with torch.no_grad():
    hs = m.model(input_ids=ids, output_hidden_states=True).hidden_states
out = [hs[i + 1][0] for i in range(m.config.num_hidden_layers - 1)] + [last["h"][0]]
print(json.dumps([h.reshape(-1).tolist() for h in out]))
`;

pythonTest(
  "qwen2 definition (reference interpreter) matches HF transformers Qwen2ForCausalLM in float64 (GQA 3, 3 layers, untied)",
  { modules: ["torch", "transformers"] },
  async () => {
    await using dir = await tempDir();
    await writeTinyModel(dir.path, {
      hidden: 48,
      layers: 3,
      heads: 6,
      kvHeads: 2,
      vocab: 97,
      seed: 12,
      tie: false,
      tokenizer: false,
    });
    const ids = [5, 17, 3, 96, 40, 40, 1, 77, 23];
    const py = await new Deno.Command(PYTHON, {
      args: ["-c", HF_FORWARD, dir.path, JSON.stringify(ids)],
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!py.success) throw new Error(new TextDecoder().decode(py.stderr));
    const hf: number[][] = JSON.parse(new TextDecoder().decode(py.stdout));
    const ours = await referenceForward(
      dir.path,
      { ids: Int32Array.from(ids), lengths: Int32Array.from([ids.length]), batch: 1, seqLen: ids.length },
      [0, 1, 2],
    );
    for (let l = 0; l < 3; l++) assertClose(ours.get(l)!, hf[l], 1e-6, `layer ${l}`);
  },
);
