"""HF transformers is the numerical oracle: tiny random Qwen2 checkpoints from our own generator
(`deno task make-tiny-model`), activations from `deno task extract`, the same checkpoint loaded with
`Qwen2ForCausalLM.from_pretrained`, every extracted (layer, sample) compared within 1e-4 relative
(max |ours - hf| / max |hf| per layer).

Convention: we store the residual stream after block i, HF's ``hidden_states[i + 1]`` — except the last block,
where HF's last hidden state has the final norm applied; that one is compared with the last block's own output
(a forward hook), never with ``hidden_states[-1]``.

Cases cover float32 and bfloat16 checkpoints, GQA ratios 1, 2 and 7, tied and untied embeddings, rope_theta
1e6 (the generator's, read back from config.json), 2–4 layers; each runs on padded batches (records = real
tokens, compared with HF on the unpadded prompt) and with ``--keep_padding`` (records = the batch's padded
length, compared with HF on the padded row and its attention mask).

Backends: ``onnx`` always; ``pjrt`` runs when ``deno task extract --backend pjrt`` works here (on
ACTSHARD_PJRT_PLUGIN, else the real XLA CPU plugin of the ``xla-cpu-pjrt`` wheel, else whatever extract
discovers) and is skipped with extract's reason otherwise (ACTSHARD_REQUIRE_PJRT=1 turns
the skip into a failure). ACTSHARD_HF_FULL=1 adds the Qwen2.5-0.5B-shaped case (random weights, one 2048-token
prompt; minutes on a CPU).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import pytest

import actshard
from conftest import DenoError, extract, make_model, require, run_script, write_tasks

TOLERANCE = 1e-4


@dataclass(frozen=True)
class Case:
    name: str
    dtype: str  # checkpoint dtype: F32 | BF16
    hidden: int
    heads: int
    kv_heads: int
    layers: int
    tie: bool
    intermediate: Optional[int] = None

    @property
    def gqa(self) -> int:
        return self.heads // self.kv_heads


CASES = [
    Case("f32-gqa1-tied-2layers", "F32", hidden=32, heads=4, kv_heads=4, layers=2, tie=True),
    Case("f32-gqa2-untied-3layers", "F32", hidden=64, heads=4, kv_heads=2, layers=3, tie=False),
    Case("bf16-gqa7-tied-4layers", "BF16", hidden=56, heads=7, kv_heads=1, layers=4, tie=True),
    Case("bf16-gqa2-untied-2layers", "BF16", hidden=32, heads=4, kv_heads=2, layers=2, tie=False),
    Case("f32-gqa7-untied-4layers", "F32", hidden=112, heads=14, kv_heads=2, layers=4, tie=False),
]
FULL = Case("qwen2.5-0.5b-shape", "F32", hidden=896, heads=14, kv_heads=2, layers=24, tie=True, intermediate=4864)


def fmt_worst(worst: Dict[str, float]) -> str:
    keys = sorted(worst, key=lambda k: (int(k.split()[0]), k))
    return ", ".join(f"layer {k} {worst[k]:.2e}" for k in keys)


def rel_error(ours: np.ndarray, ref: np.ndarray) -> float:
    return float(np.max(np.abs(ours.astype(np.float64) - ref)) / max(float(np.max(np.abs(ref))), 1e-6))


class Oracle:
    """A checkpoint, its prompts' token ids (extract --dry_run --dump_prompts) and HF's model, made once."""

    def __init__(self, root: Path, case: Case, tasks: Path, extract_flags: List):
        self.case, self.root, self.tasks, self.flags = case, root, tasks, extract_flags
        self.model = make_model(root / "model", hidden=case.hidden, layers=case.layers, heads=case.heads,
                                kv_heads=case.kv_heads, dtype=case.dtype, tie=case.tie, seed=len(case.name),
                                intermediate=case.intermediate)
        dump = root / "prompts.jsonl"
        run_script("extract.ts", "--dry_run", "--dump_prompts", dump, "--model_path", self.model,
                   "--dataset_path", tasks, "--output_dir", root / "dry", *extract_flags)
        self.ids: Dict[int, List[int]] = {}
        for line in dump.read_text().splitlines():
            p = json.loads(line)
            self.ids[p["sample_idx"]] = p["input_ids"]
        torch = require("torch")
        transformers = require("transformers")
        self.torch = torch
        self.hf = transformers.Qwen2ForCausalLM.from_pretrained(
            str(self.model), dtype=torch.float32, attn_implementation="eager").eval()
        cfg = self.hf.config
        assert (cfg.num_hidden_layers, cfg.num_attention_heads, cfg.num_key_value_heads) == (
            case.layers, case.heads, case.kv_heads)
        rope = getattr(cfg, "rope_parameters", None) or {"rope_theta": getattr(cfg, "rope_theta", None)}
        assert rope["rope_theta"] == 1e6, rope
        assert cfg.tie_word_embeddings == case.tie
        self.pad_id = transformers.AutoTokenizer.from_pretrained(str(self.model)).pad_token_id
        assert self.pad_id is not None

    def hidden(self, ids: List[int], padded_len: int, masked: bool = True) -> List[np.ndarray]:
        """HF's residual stream after each block, [padded_len, hidden] per layer (right-padded with pad_id;
        attention mask 0 on the padding, or, with ``masked=False``, no mask: causal over the pad tokens)."""
        torch = self.torch
        n = len(ids)
        x = torch.tensor([ids + [self.pad_id] * (padded_len - n)])
        mask = torch.tensor([[1] * n + [0] * (padded_len - n)]) if masked else None
        last = {}
        hook = self.hf.model.layers[-1].register_forward_hook(
            lambda _m, _i, out: last.__setitem__("h", out[0] if isinstance(out, tuple) else out))
        try:
            with torch.no_grad():
                hs = self.hf.model(input_ids=x, attention_mask=mask, output_hidden_states=True).hidden_states
        finally:
            hook.remove()
        out = [hs[i + 1][0].numpy() for i in range(self.case.layers - 1)]
        out.append(last["h"][0].numpy())
        # the hook really is the pre-norm stream: HF's hidden_states[-1] (final norm applied) differs
        assert not np.allclose(out[-1], hs[-1][0].numpy(), rtol=1e-3, atol=1e-3)
        return out


_oracles: Dict[str, Oracle] = {}


def oracle_for(case: Case, work: Path, tasks: Path, flags: List) -> Oracle:
    if case.name not in _oracles:
        root = work / f"hf_{case.name}"
        root.mkdir(exist_ok=True)
        _oracles[case.name] = Oracle(root, case, tasks, flags)
    return _oracles[case.name]


_pjrt_probe: Dict[str, Optional[str]] = {}


def xla_cpu_plugin() -> Optional[str]:
    """The real XLA CPU PJRT plugin of the `xla-cpu-pjrt` wheel (.ci/requirements.txt), when installed."""
    import importlib.util
    spec = importlib.util.find_spec("xla_plugins")
    for d in (spec.submodule_search_locations or []) if spec else []:
        so = Path(d) / "xla_cpu_pjrt" / "xla_cpu_pjrt.so"
        if so.exists():
            return str(so)
    return None


def pjrt_flags() -> List[str]:
    """`--backend pjrt` on ACTSHARD_PJRT_PLUGIN, else the XLA CPU plugin, else extract's own discovery."""
    plugin = os.environ.get("ACTSHARD_PJRT_PLUGIN") or xla_cpu_plugin()
    return ["--backend", "pjrt", *(["--pjrt_plugin", plugin] if plugin else [])]


def pjrt_unavailable(work: Path, tiny_model: Path) -> Optional[str]:
    """Why `extract --backend pjrt` cannot run here (its error line), or None when it runs."""
    if "why" not in _pjrt_probe:
        tasks = write_tasks(work / "pjrt_probe_tasks.json", n_tasks=1, seed=3, max_side=2)
        p = run_script("extract.ts", "--model_path", tiny_model, "--dataset_path", tasks, "--output_dir",
                       work / "pjrt_probe", "--layers_to_extract", 0, "--predictions_per_task", 1, *pjrt_flags(),
                       check=False)
        lines = [ln for ln in p.stderr.strip().splitlines() if ln.strip()]
        _pjrt_probe["why"] = None if p.returncode == 0 else (lines[-1] if lines else f"exit {p.returncode}")
    return _pjrt_probe["why"]


@pytest.fixture(scope="module")
def hf_tasks(work) -> Path:
    # 3 tasks × 2 augmented prompts of different lengths: batches of 4 pad the shorter ones.
    return write_tasks(work / "hf_tasks.json", n_tasks=3, seed=21, max_side=7)


def backend_flags(backend: str, work: Path, tiny_model: Path) -> List[str]:
    if backend == "onnx":
        return ["--backend", "onnx"]
    why = pjrt_unavailable(work, tiny_model)
    if why:
        if os.environ.get("ACTSHARD_REQUIRE_PJRT") == "1":
            pytest.fail(f"--backend pjrt is unavailable and ACTSHARD_REQUIRE_PJRT=1: {why}")
        pytest.skip(f"--backend pjrt is unavailable here: {why}")
    return pjrt_flags()


def compare(o: Oracle, out: Path, keep_padding: bool) -> Dict[str, float]:
    """Every record of ``out`` against HF; returns the worst relative error per layer (``"L"``), and under
    ``--keep_padding`` per layer for the padded positions (``"L pad"``).

    Real tokens are compared with HF on the same (padded) row with its attention mask. Padded positions are
    unspecified by the backend contract (docs/ir.md); they must still be one of HF's two readings of a padded
    row: with the attention mask (pads attend to the real tokens only) or without (causal over the pads, what
    a causal-only fused kernel computes) — not garbage.
    """
    ds = actshard.open_dataset(str(out))
    worst: Dict[str, float] = {}
    seen = set()
    padded = 0
    cache: Dict[tuple, List[np.ndarray]] = {}

    def hf(idx: int, length: int, masked: bool = True) -> List[np.ndarray]:
        if (idx, length, masked) not in cache:
            cache[(idx, length, masked)] = o.hidden(o.ids[idx], length, masked)
        return cache[(idx, length, masked)]

    def note(key: str, err: float):
        worst[key] = max(worst.get(key, 0.0), err)

    for r in ds.records():
        n = len(o.ids[r.sample_idx])
        assert r.dtype == "float32" and r.activation.shape == r.shape
        if keep_padding:
            assert r.shape[0] >= n
        else:
            assert r.shape[0] == n, "without --keep_padding a record holds the prompt's real tokens"
        ref = hf(r.sample_idx, r.shape[0])[r.layer]
        note(str(r.layer), rel_error(r.activation[:n], ref[:n]))
        if r.shape[0] > n:
            padded += 1
            pads = r.activation[n:]
            assert np.isfinite(pads).all()
            unmasked = hf(r.sample_idx, r.shape[0], masked=False)[r.layer][n:]
            note(f"{r.layer} pad", min(rel_error(pads, ref[n:]), rel_error(pads, unmasked)))
        seen.add((r.layer, r.sample_idx))
    assert seen == {(l, s) for l in range(o.case.layers) for s in o.ids}, "every layer of every prompt"
    if keep_padding:
        assert padded > 0, "no record was padded: the case does not test --keep_padding"
    return worst


@pytest.mark.parametrize("backend", ["onnx", "pjrt"])
@pytest.mark.parametrize("keep_padding", [False, True], ids=["padded-batches", "keep-padding"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_matches_hf_transformers(work, tiny_model, hf_tasks, case, keep_padding, backend):
    flags = backend_flags(backend, work, tiny_model)
    common = ["--predictions_per_task", 2]
    o = oracle_for(case, work, hf_tasks, common)
    out = o.root / f"out_{backend}_{'keep' if keep_padding else 'real'}"
    extract(o.model, hf_tasks, out, *common, "--batch_size", 4, "--codec", "none", *flags,
            *(["--keep_padding"] if keep_padding else []), layers=list(range(case.layers)))
    worst = compare(o, out, keep_padding)
    print(f"{case.name} {backend} keep_padding={keep_padding}: " +
          fmt_worst(worst))
    bad = {l: e for l, e in worst.items() if e > TOLERANCE}
    assert not bad, f"layers differ from HF by more than {TOLERANCE} relative: {bad}"


def test_comparison_fails_on_a_wrong_layer(work, tiny_model, hf_tasks):
    """The check can fail: a record off by 2e-4 relative in one layer is reported."""
    o = oracle_for(CASES[0], work, hf_tasks, ["--predictions_per_task", 2])
    out = o.root / "out_onnx_real"
    if not (out / "metadata.json").exists():
        extract(o.model, hf_tasks, out, "--predictions_per_task", 2, "--batch_size", 4, "--codec", "none",
                layers=list(range(o.case.layers)))
    r = next(actshard.open_dataset(str(out)).records(layer=1))
    ref = o.hidden(o.ids[r.sample_idx], r.shape[0])[1]
    assert rel_error(r.activation, ref) <= TOLERANCE
    bumped = r.activation.copy()
    bumped[0, 0] += 2e-4 * np.max(np.abs(ref))
    assert rel_error(bumped, ref) > TOLERANCE


@pytest.mark.skipif(os.environ.get("ACTSHARD_HF_FULL") != "1",
                    reason="opt-in: ACTSHARD_HF_FULL=1 (Qwen2.5-0.5B shape, random weights, a 2048-token prompt)")
def test_full_qwen25_05b_shape(work):
    tasks = write_tasks(work / "hf_full_tasks.json", n_tasks=1, seed=8, min_side=24, max_side=30, train_pairs=(3, 3))
    flags = ["--predictions_per_task", 1, "--max_seq_length", 2048]
    o = oracle_for(FULL, work, tasks, flags)
    assert [len(v) for v in o.ids.values()] == [2048], "the prompt must fill --max_seq_length 2048"
    out = o.root / "out_onnx_real"
    extract(o.model, tasks, out, *flags, "--batch_size", 1, "--codec", "none", layers=list(range(FULL.layers)))
    worst = compare(o, out, keep_padding=False)
    print("full shape: " + fmt_worst(worst))
    bad = {l: e for l, e in worst.items() if e > TOLERANCE}
    assert not bad, f"layers differ from HF by more than {TOLERANCE} relative: {bad}"


def test_pjrt_probe_reports_a_reason(work, tiny_model):
    """The pjrt hook either runs or gives a one-line reason (never a silent skip)."""
    try:
        why = pjrt_unavailable(work, tiny_model)
    except DenoError as e:  # pragma: no cover - run_script(check=False) does not raise
        pytest.fail(str(e))
    assert why is None or (why.strip() and "\n" not in why)
