#!/usr/bin/python3
"""baleine's model in plain PyTorch eager, timed the way baleine is timed (issue 9).

The reference side of the throughput comparisons: the SAME architecture, sizes, batch,
optimizer and initialisation as `baleine train CONFIG` on one process, written the way a
PyTorch practitioner would (F.linear everywhere, experts computed on gathered rows with one loop
over experts, not over tokens). No torch.compile, no custom extensions: eager PyTorch as shipped.

    /usr/bin/python3 bench/pytorch_reference.py CONFIG.yaml [--set key.path=value ...]
        [--device cpu|cuda] [--precision fp32|bf16] [--threads 2] [--steps 30] [--warmup 5]
        [--attention explicit|sdpa] [--peak-tflops TFLOPS] [--json OUT.json]

Devices and precisions:
- --device cpu (the default; `device:` in the config when given): FP32 on --threads threads
  with foreach AdamW, the CPU comparison of issue 9.
- --device cuda: the model, the data of each micro-batch and the optimizer state live on GPU 0;
  each step is timed between two torch.cuda.synchronize() calls. --threads is not used. The
  weights are still made on the CPU (the same streams) and then moved.
- --precision (default: the config's precision.compute, fp32 when unset): fp32, or bf16 the
  way BF16 is trained in eager PyTorch: torch.autocast(device_type, dtype=torch.bfloat16)
  around forward and loss, FP32 master weights, FP32 gradients and FP32 AdamW moments
  (precision.optimizer_state must stay fp32), the cross-entropy on FP32 logits, no loss scaler
  (BF16 has FP32's exponent range). Autocast runs every F.linear/matmul in BF16, the head, the
  gate and the attention core included, where baleine's bf16 keeps those in FP32
  (trainer/config/config.h, PrecisionSection); RoPE is applied in FP32 (Llama's reference
  code does the same) and the residual stream stays FP32.
- AdamW: foreach=True on the CPU; fused=True on CUDA, the single-kernel implementation
  PyTorch's AdamW documentation calls the fastest and the one nanoGPT picks when it is
  available (torch >= 2.0; older torch falls back to foreach, which the banner says).
- --attention (default: sdpa on CUDA when torch has F.scaled_dot_product_attention, explicit
  elsewhere): explicit is softmax(QK^T/sqrt(d) + causal mask) V with the seq x seq scores
  materialised; sdpa is F.scaled_dot_product_attention(is_causal=True), the fused
  (FlashAttention) kernel a practitioner calls on a GPU, as baleine's CUDA attention is
  FlashAttention-style. The same math; the CPU default keeps issue 9's numbers.

Throughput and MFU: tokens/s = global_batch x seq_len / median step time. On CUDA the summary
adds MFU with baleine's FLOP count (trainer/cost/flops.cpp): FLOPs/token = 6 x (active
parameters - embedding table) + 6 x layers x seq_len x hidden (causal QK^T and AV, forward and
backward), MFU = tokens/s x FLOPs/token / BF16 dense peak. The peak is --peak-tflops, else the
config's cost.peak_tflops, else the row of baleine's table (trainer/config/gpu_table.cpp) that
torch.cuda.get_device_name() names, else the config's cost.gpu row. The formula is printed.

What matches baleine (trainer/model/*.cpp, kernels/cpu/*.cpp):
- the model: untied embedding and head, pre-norm blocks (RMSNorm with weight), attention with
  interleaved-pair RoPE and a causal softmax, SwiGLU MLPs in the first dense_layers blocks and
  DeepSeek-MoE elsewhere (sigmoid/softmax scores, a bias that only picks the top_k, weights
  from the unbiased scores, shared experts, aux-loss-free bias updates after each step, the
  optional sequence-wise balance loss and node-limited routing);
- the initial weights bit for bit where libm agrees (the same SplitMix64 + Box-Muller stream
  per parameter name, trainer/model/parameters.cpp) and the same training windows (the same
  counter-based sampler, trainer/data/dataset.cpp), so the loss curves can be laid side by side;
- the step: global_batch / micro_batch micro-batches with the loss scaled by 1/accumulation,
  global-norm clipping, AdamW with decay on the parameters baleine decays, baleine's LR schedule.
What does not: reductions run in FP32 in PyTorch's order (baleine sums some in double), and
torch.topk may break exact ties differently. On configs/quickstart.yaml the two losses agree
to ~1e-5 for the first ten steps; after that the runs part like any two chaotic trajectories
(a 2.5e-5 relative change of the peak LR moves baleine's own curve as far).

Timing: time.perf_counter around each whole step (forward, backward, clip, optimizer, bias
update); the summary is the median over the steps after --warmup, the statistic issue 9 takes
from baleine's per-step times (RUN_DIR/metrics.jsonl step_s) as well. There is no validation
pass (data.val and train.eval_* are not used); baleine's last step carries its final one, which
the median leaves aside.
"""
import argparse
import contextlib
import copy
import ctypes
import glob
import json
import math
import os
import re
import statistics
import sys
import time

# Debian's torch runs its own ops on an OpenMP pool and its GEMMs on OpenBLAS's separate pthread
# pool (libopenblas0-pthread). OpenMP workers that spin after each parallel region (libgomp's
# default ACTIVE wait) hold the cores the BLAS threads need next: measured here on 2 cores, a
# quickstart step took ~800 ms that way against ~220-270 ms with PASSIVE. libgomp reads this at
# load, so it is set before torch is imported; a value set by the user wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402  (after the environment above)
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import yaml  # noqa: E402
from torch import nn  # noqa: E402

# ---------------------------------------------------------------------------------------------
# Config: the keys and defaults of trainer/config/config.h for the sections that shape the
# model, the data and the step. Sections that only matter to baleine's runtime are accepted
# and ignored (parallel.* is said aloud: this is one process).

DEFAULTS = {
    "run": {"name": "baleine", "dir": "", "seed": 1234},
    "model": {
        "vocab_size": 257, "hidden": 128, "layers": 4, "heads": 4, "intermediate": 512,
        "dense_layers": 1, "rope_theta": 10000.0, "norm_eps": 1e-6, "init_std": 0.02,
        "moe": {
            "routed_experts": 8, "shared_experts": 1, "top_k": 2, "intermediate": 128,
            "score": "sigmoid", "normalize": True, "route_scale": 1.0,
            "bias_update_speed": 0.001, "seq_aux_alpha": 0.0, "expert_groups": 1,
            "max_groups_per_token": 0,
        },
    },
    "data": {"train": "", "val": ""},
    "train": {
        "steps": 100, "micro_batch": 8, "global_batch": 8, "seq_len": 128, "grad_clip": 1.0,
        "eval_every": 0, "eval_batches": 4,
        "lr": {"peak": 3e-3, "min": 3e-4, "warmup_steps": 20, "schedule": "cosine"},
        "adamw": {"beta1": 0.9, "beta2": 0.95, "eps": 1e-8, "weight_decay": 0.1},
    },
}
IGNORED_SECTIONS = ("parallel", "cost", "ledger", "checkpoint", "guard", "log")

# The BF16 dense tensor peaks (TFLOP/s) of baleine's device table (trainer/config/gpu_table.cpp,
# which cites each datasheet), by cost.gpu name; and how torch.cuda.get_device_name() spells
# them (checked in order: H20 before it would match H200, L4 against L40S, A10 against A100).
GPU_PEAKS = {
    "T4": 65.0, "A10": 125.0, "A100-40": 312.0, "A100-80": 312.0, "A800": 312.0, "L4": 121.0,
    "L40S": 362.05, "RTX-4090": 165.2, "RTX-3090": 71.0, "H100-SXM": 989.5, "H100-PCIe": 756.5,
    "H800": 989.5, "H20": 148.0, "H200": 989.5, "B200": 2250.0,
}
GPU_NAMES = (  # (pattern on the upper-cased device name, table row; None = not in the table)
    (r"\bH200\b", "H200"), (r"\bH20\b", "H20"), (r"\bH800\b", "H800"),
    (r"\bH100\b.*\bPCIE\b", "H100-PCIe"), (r"\bH100\b.*\bNVL\b", None),
    (r"\bH100\b", "H100-SXM"), (r"\bB200\b", "B200"), (r"\bA100\b.*\b40GB\b", "A100-40"),
    (r"\bA100\b", "A100-80"), (r"\bA800\b", "A800"), (r"\bL40S\b", "L40S"), (r"\bL4\b", "L4"),
    (r"\bRTX 4090\b", "RTX-4090"), (r"\bRTX 3090\b", "RTX-3090"), (r"\bA10\b", "A10"),
    (r"\bT4\b", "T4"),
)


def fail(message):
    sys.exit(f"pytorch_reference: {message}")


def typed(value, default, key):
    """PyYAML reads YAML 1.1 (`1e-6` is a string there); coerce to the default's type."""
    try:
        if isinstance(default, bool):
            if isinstance(value, bool):
                return value
            raise ValueError
        if isinstance(default, int):
            if isinstance(value, bool) or float(value) != int(float(value)):
                raise ValueError
            return int(float(value))
        if isinstance(default, float):
            return float(value)
        return "" if value is None else str(value)
    except (TypeError, ValueError):
        fail(f"{key}: '{value}' is not a {type(default).__name__}")


def merge(defaults, given, prefix):
    out = copy.deepcopy(defaults)
    for key, value in (given or {}).items():
        path = f"{prefix}{key}"
        if key not in defaults:
            fail(f"unknown key '{path}' (known here: {', '.join(defaults)})")
        if isinstance(defaults[key], dict):
            value = {} if value is None else value
            if not isinstance(value, dict):
                fail(f"'{path}' must be a section")
            out[key] = merge(defaults[key], value, path + ".")
        else:
            out[key] = typed(value, defaults[key], path)
    return out


def set_path(tree, names, value):
    """--set a.b.c=VALUE: a map VALUE sets each of its keys, as baleine's overrides do."""
    if isinstance(value, dict):
        for key, child in value.items():
            set_path(tree, names + [str(key)], child)
        return
    for name in names[:-1]:
        if not isinstance(tree.get(name), dict):
            tree[name] = {}
        tree = tree[name]
    tree[names[-1]] = value


def load_config(path, overrides):
    """(config, ignored sections, settings): settings holds what the reference takes from the
    sections it otherwise ignores: device, precision.compute, cost.gpu and cost.peak_tflops."""
    with open(path) as f:
        tree = yaml.safe_load(f) or {}
    for argument in overrides:
        key, equals, text = argument.partition("=")
        if not equals or not key.strip():
            fail(f"--set {argument}: an override must look like key.path=VALUE")
        set_path(tree, key.strip().split("."), yaml.safe_load(text))
    precision = tree.pop("precision", None) or {}
    if not isinstance(precision, dict):
        fail("'precision' must be a section")
    settings = {"device": typed(tree.pop("device", "cpu"), "", "device"),
                "precision": typed(precision.get("compute", "fp32"), "", "precision.compute")}
    if settings["precision"] not in ("fp32", "bf16"):
        fail(f"precision.compute={settings['precision']}: this reference runs fp32 or bf16 "
             "(autocast); FP8 has no eager-PyTorch equivalent here")
    if typed(precision.get("optimizer_state", "fp32"), "", "precision.optimizer_state") != \
            "fp32":
        fail("precision.optimizer_state: this reference keeps FP32 AdamW moments; drop it")
    cost = tree.get("cost") or {}
    if not isinstance(cost, dict):
        fail("'cost' must be a section")
    settings["cost_gpu"] = typed(cost.get("gpu", "cpu"), "", "cost.gpu")
    settings["cost_peak_tflops"] = typed(cost.get("peak_tflops", 0.0), 0.0, "cost.peak_tflops")
    ignored = [s for s in IGNORED_SECTIONS if tree.pop(s, None) is not None]
    c = merge(DEFAULTS, tree, "")
    m, t = c["model"], c["train"]
    if m["hidden"] % m["heads"] or (m["hidden"] // m["heads"]) % 2:
        fail("model.hidden / model.heads must be an even head_dim (RoPE rotates pairs)")
    if t["global_batch"] % t["micro_batch"]:
        fail("train.global_batch must be a multiple of train.micro_batch (one process: dp=1)")
    moe = m["moe"]
    if moe["score"] not in ("sigmoid", "softmax"):
        fail("model.moe.score must be sigmoid or softmax")
    if not 0 < moe["top_k"] <= moe["routed_experts"]:
        fail("need 0 < model.moe.top_k <= model.moe.routed_experts")
    if moe["expert_groups"] <= 0 or moe["routed_experts"] % moe["expert_groups"] or \
            not 0 <= moe["max_groups_per_token"] <= moe["expert_groups"] or \
            (moe["max_groups_per_token"] > 0 and moe["top_k"] > moe["max_groups_per_token"] *
             (moe["routed_experts"] // moe["expert_groups"])):
        fail("model.moe.expert_groups must split the experts evenly, and 0 <= "
             "max_groups_per_token <= expert_groups with top_k experts reachable")
    return c, ignored, settings


# ---------------------------------------------------------------------------------------------
# baleine's random streams, reproduced so that weights and windows are the same as its own.

MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


def splitmix64(x):
    """SplitMix64 (Steele, Lea & Flood, OOPSLA 2014): the add, then the output mix."""
    z = (x + GOLDEN) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def named_normals(seed, name, count):
    """NamedNormalStream (trainer/model/parameters.cpp) vectorised: its state advances by the
    golden gamma per draw, so draw i is mix(state0 + i·gamma); Box-Muller gives cos then sin."""
    h = 0xCBF29CE484222325
    for byte in name.encode():
        h = ((h ^ byte) * 0x100000001B3) & MASK64
    state0 = (seed ^ h) & MASK64  # the constructor's splitmix64 call is draw 1, discarded
    pairs = (count + 1) // 2
    z = np.arange(2, 2 + 2 * pairs, dtype=np.uint64) * np.uint64(GOLDEN) + np.uint64(state0)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    mantissas = (z >> np.uint64(11)).astype(np.float64)
    u1 = (mantissas[0::2] + 1.0) * 2.0 ** -53
    u2 = mantissas[1::2] * 2.0 ** -53
    r = np.sqrt(-2.0 * np.log(u1))
    angle = 6.283185307179586 * u2
    return np.stack([r * np.cos(angle), r * np.sin(angle)], axis=1).reshape(-1)[:count]


def uniform_below(bound, value):
    """Lemire's unbiased multiply-and-reject, continuing the SplitMix64 chain on a reject."""
    threshold = (1 << 64) % bound
    while True:
        product = value * bound
        if product & MASK64 >= threshold:
            return product >> 64
        value = splitmix64(value)


class TokenStream:
    """The shards of data.train (a file, a directory of *.bin or a glob; trainer/data/shard.h:
    256 int32 of header, then uint16 tokens) as one stream, cut into windows like
    data::BatchSampler: row r of step s starts at a pure function of (seed, stream 0, s, r)."""

    MAGICS = (20240520, 0x42414C45)  # llm.c, baleine

    def __init__(self, source, seq_len, seed, vocab_size):
        if os.path.isfile(source):
            paths = [source]
        elif os.path.isdir(source):
            paths = sorted(os.path.join(source, n) for n in os.listdir(source)
                           if n.endswith(".bin") and not n.startswith("."))
        else:
            paths = sorted(p for p in glob.glob(source) if os.path.isfile(p))
        if not paths:
            fail(f"data.train: no token shards match '{source}' (run from the repository root)")
        parts = []
        for path in paths:
            header = np.fromfile(path, dtype="<i4", count=256)
            count = int(header[2]) if len(header) == 256 else -1
            if header[0] not in self.MAGICS or header[1] != 1 or \
                    os.path.getsize(path) != 1024 + 2 * count:
                fail(f"{path}: not a version-1 token shard whose header matches its size")
            parts.append(np.memmap(path, dtype="<u2", mode="r", offset=1024, shape=(count,)))
        self.tokens = np.concatenate(parts).astype(np.int64)
        if self.tokens.size < seq_len + 1 or self.tokens.max() >= vocab_size:
            fail(f"data.train: need >= {seq_len + 1} tokens, all below {vocab_size}")
        self.seq_len = seq_len
        self.stream_key = splitmix64(splitmix64(seed) ^ 0)  # stream 0: training

    def batch(self, step, first_row, rows):
        starts = []
        for r in range(first_row, first_row + rows):
            value = splitmix64(splitmix64(self.stream_key ^ step) ^ r)
            starts.append(uniform_below(self.tokens.size - self.seq_len, value))
        windows = np.stack([self.tokens[p:p + self.seq_len + 1] for p in starts])
        return torch.from_numpy(windows[:, :-1].copy()), torch.from_numpy(windows[:, 1:].copy())


# ---------------------------------------------------------------------------------------------
# The model.

class Parameters:
    """Creates parameters the way baleine's ParameterStore declares them: by baleine's name (which
    seeds the init stream), with its init and whether AdamW decays it."""

    def __init__(self, seed):
        self.seed = seed
        self.decayed, self.not_decayed = [], []

    def normal(self, name, shape, std, decay):
        values = named_normals(self.seed, name, math.prod(shape)) * std
        return self._keep(torch.from_numpy(values.astype(np.float32)).view(*shape), decay)

    def ones(self, shape):
        return self._keep(torch.ones(shape), False)

    def _keep(self, tensor, decay):
        p = nn.Parameter(tensor)
        (self.decayed if decay else self.not_decayed).append(p)
        return p


class RMSNorm(nn.Module):
    def __init__(self, params, dim, eps):
        super().__init__()
        self.weight, self.eps = params.ones(dim), eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class SwiGLU(nn.Module):
    """w2(silu(w1 x) * (w3 x)) (Shazeer 2020, "GLU Variants Improve Transformer")."""

    def __init__(self, params, name, dim, width, std, out_std):
        super().__init__()
        self.w1 = params.normal(name + ".w1", (width, dim), std, True)
        self.w3 = params.normal(name + ".w3", (width, dim), std, True)
        self.w2 = params.normal(name + ".w2", (dim, width), out_std, True)

    def forward(self, x):
        return F.linear(F.silu(F.linear(x, self.w1)) * F.linear(x, self.w3), self.w2)


class Attention(nn.Module):
    def __init__(self, params, name, m, out_std):
        super().__init__()
        d = m["hidden"]
        self.heads, self.theta = m["heads"], m["rope_theta"]
        self.wq, self.wk, self.wv = (params.normal(f"{name}.{w}", (d, d), m["init_std"], True)
                                     for w in ("wq", "wk", "wv"))
        self.wo = params.normal(name + ".wo", (d, d), out_std, True)
        self.sdpa = False  # Model.use_sdpa: F.scaled_dot_product_attention instead
        self.cache = {}

    def tables(self, seq, head_dim, device):
        """RoPE as complex rotations of (x[2i], x[2i+1]) by p·theta^(-2i/head_dim) (RoFormer
        eq. 34, the interleaved pairing of kernels/cpu/rope.cpp), angles in double; and the
        causal mask. Made on the CPU, then moved to the activations' device."""
        if (seq, device) not in self.cache:
            inv_freq = self.theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) /
                                      head_dim)
            angles = torch.outer(torch.arange(seq, dtype=torch.float64), inv_freq)
            rotation = torch.polar(torch.ones_like(angles), angles).to(torch.complex64)
            mask = torch.ones(seq, seq, dtype=torch.bool).triu(1)
            self.cache[seq, device] = (rotation.view(1, seq, 1, head_dim // 2).to(device),
                                       mask.to(device))
        return self.cache[seq, device]

    def forward(self, x):
        b, t, d = x.shape
        hd = d // self.heads
        rotation, mask = self.tables(t, hd, x.device)

        def rope(y):
            # In FP32 under autocast too (complex BF16 does not exist); no-ops in FP32.
            pairs = torch.view_as_complex(y.float().view(b, t, self.heads, hd // 2, 2))
            return torch.view_as_real(pairs * rotation).view(b, t, self.heads, hd).type_as(y)

        q = rope(F.linear(x, self.wq)).transpose(1, 2)
        k = rope(F.linear(x, self.wk)).transpose(1, 2)
        v = F.linear(x, self.wv).view(b, t, self.heads, hd).transpose(1, 2)
        if self.sdpa:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            scores = torch.matmul(q * (1.0 / math.sqrt(hd)), k.transpose(-2, -1))
            probs = torch.softmax(scores.masked_fill(mask, float("-inf")), dim=-1)
            out = torch.matmul(probs, v)
        return F.linear(out.transpose(1, 2).reshape(b, t, d), self.wo)


class MoE(nn.Module):
    """DeepSeek-MoE (DeepSeek-V3 report, arXiv 2412.19437, §2.1.2) with aux-loss-free balancing."""

    def __init__(self, params, name, m, out_std):
        super().__init__()
        moe, d = m["moe"], m["hidden"]
        self.o = moe
        self.gate = params.normal(name + ".gate", (moe["routed_experts"], d), m["init_std"],
                                  False)
        self.experts = nn.ModuleList(
            SwiGLU(params, f"{name}.experts.{e}", d, moe["intermediate"], m["init_std"], out_std)
            for e in range(moe["routed_experts"]))
        self.shared = SwiGLU(params, name + ".shared", d,
                             moe["shared_experts"] * moe["intermediate"], m["init_std"],
                             out_std) if moe["shared_experts"] > 0 else None
        self.register_buffer("bias", torch.zeros(moe["routed_experts"]))
        self.register_buffer("load", torch.zeros(moe["routed_experts"], dtype=torch.int64))
        self.aux_loss = None

    def choose(self, scores):
        """The top_k experts by score + bias; under node-limited routing only among the
        max_groups groups with the highest sums of their 2 best keys."""
        o, keys = self.o, scores + self.bias
        groups, kept = o["expert_groups"], o["max_groups_per_token"]
        if 0 < kept < groups:
            grouped = keys.view(keys.shape[0], groups, -1)
            best = grouped.topk(min(2, grouped.shape[-1]), dim=-1).values.sum(-1)
            dropped = torch.ones_like(best, dtype=torch.bool).scatter_(
                1, best.topk(kept, dim=-1).indices, False)
            keys = grouped.masked_fill(dropped.unsqueeze(-1), float("-inf")).view_as(keys)
        return keys.topk(o["top_k"], dim=-1).indices

    def forward(self, x):
        b, t, d = x.shape
        o, x = self.o, x.reshape(-1, d)
        logits = F.linear(x, self.gate)
        scores = torch.sigmoid(logits) if o["score"] == "sigmoid" else logits.softmax(-1)
        with torch.no_grad():
            chosen = self.choose(scores)
        weights = scores.gather(1, chosen)  # the bias chooses, it never weighs
        if o["normalize"]:
            weights = weights / weights.sum(-1, keepdim=True)
        weights = weights * o["route_scale"]
        self.aux_loss = self.sequence_balance_loss(scores, chosen, b, t) \
            if o["seq_aux_alpha"] > 0 else None

        # Gather the (token, slot) rows by expert, one matmul triple per expert on its slice,
        # then weigh and scatter-add them back to their tokens.
        flat = chosen.view(-1)
        expert_of_row, order = torch.sort(flat, stable=True)
        counts = torch.bincount(flat, minlength=len(self.experts))
        if self.training:
            self.load += counts
        token_of_row = order // o["top_k"]
        rows = x.index_select(0, token_of_row)
        outputs = [expert(part) if part.shape[0] else part for expert, part in
                   zip(self.experts, rows.split(counts.tolist()))]
        # Under autocast the experts answer in BF16 and an idle expert's empty slice is still
        # FP32; the rows are summed into the FP32 residual width (all no-ops in FP32).
        dtype = next((out.dtype for out in outputs if out.shape[0]), x.dtype)
        y_rows = torch.cat([out.to(dtype) for out in outputs]) * \
            weights.view(-1)[order].unsqueeze(1)
        y = torch.zeros_like(x).index_add(0, token_of_row, y_rows.to(x.dtype))
        if self.shared is not None:
            y = y + self.shared(x)
        return y.view(b, t, d)

    def sequence_balance_loss(self, scores, chosen, b, t):
        """alpha · mean over sequences of Σ_e f_e·P_e (V3 eqs. 17-20; kernels/routing.h)."""
        e, k = scores.shape[1], self.o["top_k"]
        picks = torch.zeros(b, t, e, device=scores.device).scatter_(2, chosen.view(b, t, k),
                                                                     1.0)
        fraction = picks.sum(1) * (e / (k * t))
        share = (scores / scores.sum(-1, keepdim=True)).view(b, t, e).mean(1)
        return self.o["seq_aux_alpha"] * (fraction * share).sum(-1).mean()

    @torch.no_grad()
    def update_bias(self, speed):
        """Overloaded experts become less attractive, underloaded ones more (V3 §2.1.2)."""
        mean = self.load.sum().double() / self.load.numel()
        self.bias -= speed * torch.sign(self.load.double() - mean).float()
        self.load.zero_()


class Block(nn.Module):
    def __init__(self, params, index, m):
        super().__init__()
        name = f"blocks.{index}"
        out_std = m["init_std"] / math.sqrt(2.0 * m["layers"])  # GPT-2 depth scaling
        self.norm1 = RMSNorm(params, m["hidden"], m["norm_eps"])
        self.norm2 = RMSNorm(params, m["hidden"], m["norm_eps"])
        self.attention = Attention(params, name + ".attention", m, out_std)
        if index >= m["dense_layers"]:
            self.ffn = MoE(params, name + ".moe", m, out_std)
        else:
            self.ffn = SwiGLU(params, name + ".mlp", m["hidden"], m["intermediate"],
                              m["init_std"], out_std)

    def forward(self, x):
        h = x + self.attention(self.norm1(x))
        return h + self.ffn(self.norm2(h))


class Model(nn.Module):
    def __init__(self, m, seed):
        super().__init__()
        self.params = Parameters(seed)  # declared in baleine's order; plain list, not a module
        p = self.params
        self.embedding = p.normal("embedding", (m["vocab_size"], m["hidden"]), m["init_std"],
                                  False)
        self.blocks = nn.ModuleList(Block(p, i, m) for i in range(m["layers"]))
        self.final_norm = RMSNorm(p, m["hidden"], m["norm_eps"])
        self.head = p.normal("head", (m["vocab_size"], m["hidden"]), m["init_std"], True)

    def moe_layers(self):
        return [b.ffn for b in self.blocks if isinstance(b.ffn, MoE)]

    def use_sdpa(self):
        for block in self.blocks:
            block.attention.sdpa = True

    def forward(self, inputs, targets):
        """(mean cross-entropy over the micro-batch's tokens, summed balance losses)."""
        x = F.embedding(inputs, self.embedding)
        for block in self.blocks:
            x = block(x)
        logits = F.linear(self.final_norm(x), self.head).float()  # the loss in FP32
        loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.reshape(-1))
        aux = [moe.aux_loss for moe in self.moe_layers() if moe.aux_loss is not None]
        return loss, sum(aux) if aux else None

    def parameter_counts(self):
        """(total, active): active counts top_k of each MoE layer's routed experts."""
        total = sum(p.numel() for p in self.parameters())
        inactive = sum(sum(w.numel() for w in moe.experts[0].parameters()) *
                       (len(moe.experts) - moe.o["top_k"]) for moe in self.moe_layers())
        return total, total - inactive


# ---------------------------------------------------------------------------------------------
# Training and timing.

def learning_rate(lr, step, total_steps):
    """trainer/optim/lr_schedule.cpp: linear warmup to peak, then cosine to min."""
    if lr["warmup_steps"] > 0 and step <= lr["warmup_steps"]:
        return lr["peak"] * step / lr["warmup_steps"]
    decay_steps = total_steps - lr["warmup_steps"]
    if lr["schedule"] == "constant" or decay_steps <= 0:
        return lr["peak"]
    progress = min(max((step - lr["warmup_steps"]) / decay_steps, 0.0), 1.0)
    return lr["min"] + 0.5 * (lr["peak"] - lr["min"]) * (1.0 + math.cos(math.pi * progress))


def si(value, unit):
    """trainer/cost/units.cpp's format_si, roughly: 7.68 MFLOP, 2.61 GFLOP."""
    for scale, prefix in ((1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"),
                          (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def flops_per_token(m, seq_len, active):
    """trainer/cost/flops.cpp: 6 FLOP per token for each active matmul parameter (2 forward, 4
    backward; the embedding is a lookup, so the table is left out), plus causal attention's
    QK^T and AV: 2 matmuls x 2 FLOP x hidden x seq/2 keys on average x 3 (forward + backward)
    = 6 x seq x hidden per layer. Returns (FLOPs per token, the formula with its numbers)."""
    matmul = active - m["vocab_size"] * m["hidden"]
    attention = 6 * m["layers"] * seq_len * m["hidden"]
    total = 6 * matmul + attention
    return total, (f"6 x {matmul:,} matmul parameters (active - embedding) + 6 x {m['layers']} "
                   f"layers x {seq_len} seq x {m['hidden']} hidden (causal attention) = "
                   f"{si(total, 'FLOP')}/token")


def bf16_peak(args, settings, gpu_name):
    """(TFLOP/s, where it came from, a note or None): --peak-tflops, cost.peak_tflops, the row
    the device's name matches, then cost.gpu's row; (None, reason, None) when none applies."""
    upper, row = gpu_name.upper(), None
    for pattern, name in GPU_NAMES:
        if re.search(pattern, upper):
            row = name
            break
    configured = settings["cost_gpu"] if settings["cost_gpu"] in GPU_PEAKS else None
    note = None
    if row and configured and GPU_PEAKS[row] != GPU_PEAKS[configured]:
        note = (f"the config's cost.gpu={configured} ({GPU_PEAKS[configured]} TFLOP/s) is not "
                f"this {gpu_name}: baleine's MFU is against cost.gpu's peak")
    if args.peak_tflops:
        return args.peak_tflops, "--peak-tflops", note
    if settings["cost_peak_tflops"] > 0:
        return settings["cost_peak_tflops"], "the config's cost.peak_tflops", note
    if row:
        return GPU_PEAKS[row], f"baleine's table, {row} row ('{gpu_name}')", note
    if configured:
        return GPU_PEAKS[configured], f"baleine's table, the config's cost.gpu={configured}", \
            f"'{gpu_name}' is not in baleine's table; the peak is cost.gpu's"
    return None, f"'{gpu_name}' is not in baleine's table: pass --peak-tflops", None


class _DlInfo(ctypes.Structure):
    _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]


def blas_library(threads):
    """The file that provides the sgemm_ torch calls, and for OpenBLAS its thread count, set to
    `threads` (torch.set_num_threads sizes torch's OpenMP pool, not OpenBLAS's own).

    Several BLAS libraries can be mapped at once (numpy may bring OpenBLAS while torch resolved
    the reference BLAS), so the name comes from resolving sgemm_ the way libtorch_cpu does
    (dlsym on its handle searches it and its dependencies) and asking dladdr which file holds
    it. Debian's OpenBLAS answers /usr/lib/<arch>/openblas-pthread/libblas.so.3, the slow
    reference BLAS /usr/lib/<arch>/blas/libblas.so.3.*."""
    torch.matmul(torch.ones(64, 64), torch.ones(64, 64))
    with open("/proc/self/maps") as maps:
        mapped = {line.split()[-1] for line in maps if line.split()[-1].startswith("/")}
    torch_cpu = [path for path in mapped if os.path.basename(path).startswith("libtorch_cpu")]
    try:
        address = ctypes.cast(ctypes.CDLL(torch_cpu[0]).sgemm_, ctypes.c_void_p).value
        dl = ctypes.CDLL(None)
        dl.dladdr.argtypes = [ctypes.c_void_p, ctypes.POINTER(_DlInfo)]
        info = _DlInfo()
        if not dl.dladdr(address, ctypes.byref(info)):
            raise OSError("dladdr found no file")
        path = os.path.realpath(info.dli_fname.decode())
        provider = ctypes.CDLL(path)
    except (IndexError, AttributeError, OSError) as error:
        return f"unknown ({error})", None
    if hasattr(provider, "openblas_set_num_threads"):
        provider.openblas_set_num_threads(threads)
        return path, provider.openblas_get_num_threads()
    return path, None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--device", choices=("cpu", "cuda"),
                        help="where the model, data and optimizer live (default: the config's "
                        "device, cpu when unset)")
    parser.add_argument("--precision", choices=("fp32", "bf16"),
                        help="fp32, or bf16 autocast with FP32 master weights and AdamW "
                        "(default: the config's precision.compute, fp32 when unset)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (--device cpu)")
    parser.add_argument("--steps", type=int, default=30,
                        help="steps to run; the LR schedule spans them (baleine: train.steps)")
    parser.add_argument("--warmup", type=int, default=5, help="steps left out of the median")
    parser.add_argument("--attention", choices=("explicit", "sdpa"),
                        help="explicit softmax(QK^T)V or F.scaled_dot_product_attention "
                        "(default: sdpa on CUDA when torch has it, explicit elsewhere)")
    parser.add_argument("--peak-tflops", type=float, default=0.0,
                        help="BF16 dense peak for the MFU (default: cost.peak_tflops, then "
                        "baleine's table row for the GPU's name, then cost.gpu's row)")
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args()
    if args.steps <= args.warmup:
        fail("--steps must exceed --warmup")

    c, ignored, settings = load_config(args.config, args.set)
    m, t = c["model"], c["train"]
    device = args.device or settings["device"]
    precision = args.precision or settings["precision"]
    if device not in ("cpu", "cuda"):
        fail(f"device: '{device}' is not cpu or cuda")
    cuda = device == "cuda"
    if cuda and not torch.cuda.is_available():
        why = "this torch is built without CUDA" if torch.version.cuda is None else \
            f"this torch is built for CUDA {torch.version.cuda} but sees no usable GPU"
        fail(f"--device cuda: torch.cuda.is_available() is False ({why}; torch "
             f"{torch.__version__}). Run on the GPU machine, or drop --device cuda.")
    sdpa_available = hasattr(F, "scaled_dot_product_attention")
    attention = args.attention or ("sdpa" if cuda and sdpa_available else "explicit")
    if attention == "sdpa" and not sdpa_available:
        fail(f"--attention sdpa: torch {torch.__version__} has no "
             "F.scaled_dot_product_attention (torch >= 2.0)")
    bf16 = precision == "bf16"

    if cuda:
        gpu_name = torch.cuda.get_device_name(0)
        banner = (f"pytorch reference: torch {torch.__version__} (CUDA {torch.version.cuda}), "
                  f"{gpu_name}")
    else:
        torch.set_num_threads(args.threads)
        torch.set_num_interop_threads(1)
        blas, blas_threads = blas_library(args.threads)
        banner = (f"pytorch reference: torch {torch.__version__}, {args.threads} threads "
                  f"(interop 1, OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}), BLAS {blas}" +
                  (f" ({blas_threads} threads)" if blas_threads else ""))
    data = TokenStream(c["data"]["train"], t["seq_len"], c["run"]["seed"], m["vocab_size"])
    model = Model(m, c["run"]["seed"])  # made on the CPU, the same weights on every device
    if cuda:
        model.to(device)  # in place: the Parameters lists keep pointing at the moved tensors
    if attention == "sdpa":
        model.use_sdpa()
    model.train()
    total, active = model.parameter_counts()
    a = t["adamw"]
    groups = [{"params": model.params.decayed, "weight_decay": a["weight_decay"]},
              {"params": model.params.not_decayed, "weight_decay": 0.0}]
    hyper = {"lr": 0.0, "betas": (a["beta1"], a["beta2"]), "eps": a["eps"]}
    adamw = "foreach"
    if cuda:
        try:
            optimizer = torch.optim.AdamW(groups, fused=True, **hyper)
            adamw = "fused"
        except (TypeError, RuntimeError, ValueError):
            adamw = "foreach (this torch has no fused AdamW)"
    if adamw.startswith("foreach"):
        optimizer = torch.optim.AdamW(groups, foreach=True, **hyper)
    accum = t["global_batch"] // t["micro_batch"]
    tokens_per_step = t["global_batch"] * t["seq_len"]
    flops, formula = flops_per_token(m, t["seq_len"], active)

    print(banner)
    if ignored:
        print(f"ignored: {', '.join(s + '.*' for s in ignored)} (one process: pp=dp=ep=1)")
    print(f"model: {m['layers']} blocks ({m['dense_layers']} dense), hidden {m['hidden']}, "
          f"{m['heads']} heads, {m['moe']['routed_experts']} routed experts top-"
          f"{m['moe']['top_k']} + {m['moe']['shared_experts']} shared, {precision.upper()}")
    if cuda or bf16:
        print(f"{device}: {precision}" +
              (" (autocast BF16 forward + loss on FP32 logits; FP32 master weights, gradients "
               "and AdamW moments)" if bf16 else "") +
              f", attention {attention}, AdamW {adamw}")
    print(f"parameters: {total:,} total, {active:,} active per token")
    print(f"batch: {t['global_batch']} sequences x {t['seq_len']} tokens = {tokens_per_step} "
          f"tokens per step ({accum} micro-batches of {t['micro_batch']})")
    if args.steps != t["steps"]:
        print(f"lr schedule over {args.steps} steps (--steps), not train.steps={t['steps']}")
    peak = peak_source = None
    if cuda:
        print(f"FLOPs per token (baleine's trainer/cost/flops.cpp): {formula}")
        peak, peak_source, note = bf16_peak(args, settings, gpu_name)
        print(f"BF16 dense peak: " + (f"{peak:g} TFLOP/s ({peak_source})" if peak else
                                      peak_source))
        if note:
            print(f"note: {note}")

    def clock():
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def autocast():
        return torch.autocast(device_type=device, dtype=torch.bfloat16) if bf16 else \
            contextlib.nullcontext()

    speed = m["moe"]["bias_update_speed"]
    times, losses = [], []
    for step in range(1, args.steps + 1):
        start = clock()
        lr = learning_rate(t["lr"], step, args.steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        step_loss = 0.0
        for micro in range(accum):
            inputs, targets = data.batch(step, micro * t["micro_batch"], t["micro_batch"])
            if cuda:
                inputs, targets = inputs.to(device), targets.to(device)
            with autocast():
                loss, aux = model(inputs, targets)
            ((loss if aux is None else loss + aux) / accum).backward()
            step_loss += loss.item() / accum
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), t["grad_clip"]) \
            if t["grad_clip"] > 0 else torch.tensor(float("nan"))
        optimizer.step()
        for moe in model.moe_layers():
            moe.update_bias(speed)
        times.append(clock() - start)
        losses.append(step_loss)
        print(f"step {step:4d}/{args.steps}  loss {step_loss:.4f}  lr {lr:.2e}  "
              f"grad_norm {norm.item():.3f}  {times[-1] * 1e3:8.1f} ms  "
              f"{tokens_per_step / times[-1]:9.0f} tok/s", flush=True)

    median = statistics.median(times[args.warmup:])
    tokens_per_s = tokens_per_step / median
    where = f"{gpu_name}, {precision}" if cuda else f"{args.threads} threads"
    if bf16 and not cuda:
        where += ", bf16"
    print(f"summary: median step {median * 1e3:.1f} ms over steps {args.warmup + 1}.."
          f"{args.steps}, {tokens_per_s:.0f} tokens/s ({where}); "
          f"loss {losses[0]:.4f} -> {losses[-1]:.4f}")
    mfu = None
    if cuda:
        memory = torch.cuda.max_memory_allocated() / 2 ** 30
        achieved = tokens_per_s * flops
        print(f"tokens/s: {tokens_per_step} tokens per step / {median:.4f} s median step = "
              f"{tokens_per_s:.0f}; peak GPU memory allocated {memory:.1f} GiB")
        if peak:
            mfu = achieved / (peak * 1e12)
            print(f"MFU: tokens/s x FLOPs/token / BF16 dense peak = {tokens_per_s:.0f} x "
                  f"{si(flops, 'FLOP')} / {peak:g} TFLOP/s = {si(achieved, 'FLOP/s')} / "
                  f"{peak:g} TFLOP/s = {100 * mfu:.3g}%")
        else:
            print(f"MFU: not computed ({peak_source}); achieved {si(achieved, 'FLOP/s')}")
    if args.json:
        result = {"tool": "pytorch", "torch": torch.__version__, "device": device,
                  "precision": precision, "attention": attention, "adamw": adamw,
                  "threads": None if cuda else args.threads,
                  "tokens_per_step": tokens_per_step, "median_step_s": median,
                  "tokens_per_s": tokens_per_s, "steps": args.steps,
                  "warmup": args.warmup, "first_loss": losses[0], "last_loss": losses[-1],
                  "params_total": total, "params_active": active,
                  "flops_per_token": flops, "flops_formula": formula}
        if cuda:
            result.update({"gpu": gpu_name, "cuda": torch.version.cuda,
                           "peak_bf16_tflops": peak, "peak_source": peak_source,
                           "achieved_tflops": tokens_per_s * flops / 1e12, "mfu_bf16": mfu,
                           "mfu_formula": "tokens_per_s x flops_per_token / "
                                          "(peak_bf16_tflops x 1e12)",
                           "max_memory_allocated_bytes": torch.cuda.max_memory_allocated()})
        else:
            result.update({"blas": blas, "blas_threads": blas_threads,
                           "omp_wait_policy": os.environ["OMP_WAIT_POLICY"]})
        result.update({"step_s": times, "losses": losses})
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")

if __name__ == "__main__":
    main()
