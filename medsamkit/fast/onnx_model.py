"""ONNX Runtime version of a loaded model, with PromptableModel's interface.

``OnnxPromptableModel`` runs the encoder and decoder graphs of :mod:`.onnx_export` with ONNX
Runtime on the CPU: the shipped weightless graphs bound to the checkpoint's arrays (no torch at all,
:mod:`.graphs`), or graphs exported from a loaded torch model (kept as ``.reference``). ``encode``
returns a numpy embedding (1, 256, E, E) and ``decode`` numpy arrays; the Predictor, the embedding
cache and the volume code take numpy or torch alike.

Design notes (measured on the 2-core AVX-512 dev machine, see benchmarks/RESULTS.md):
- ORT with all graph optimisations (Conv+BN folding, GELU/LayerNorm fusion, NCHWc convolution
  layouts) runs the LiteMedSAM encoder in 0.55x the CPU time of eager PyTorch fp32 (1 thread:
  1.29 vs 2.34 CPU s; 2 threads: 2.2x shorter wall time) with the same result (max |diff| of the
  embedding 5e-6). fp32 is near this CPU's bound: the encoder's 75 GFLOP run at ~100 GFLOP/s on
  two cores, whose fp32 GEMM peak measured 190 GFLOP/s, so 5x over the reference is out of reach
  in fp32 (benchmarks/bench_fast.py in RESULTS.md, also for bf16 and int8).
- The decoder is two graphs (see :mod:`.onnx_export`): ``encode`` also runs the image part, which
  is remembered for the last few embedding objects, so a click runs only the prompt part
  (25-34 ms on two cores, 46 CPU ms on one, against 113 for the reference decoder).
- intra-op threads = the machine's physical cores (ORT's default), so one encode uses all cores;
  ORT sessions are thread-safe, so a background thread may encode while another decodes
  (the model process's view prefetch does).
- ``model_id`` differs from the torch model's (engine and precision are part of it), so an
  embedding cache shared by several models never mixes embeddings from different engines.
"""
from __future__ import annotations

import ctypes
import gc
import os
import sys
import threading
import weakref
from collections import OrderedDict

import numpy as np

from ..errors import InputError
from .onnx_export import decoder_prompt_arrays

#: Embeddings whose decoder image part (10 MiB each for LiteMedSAM) is kept: the slice being clicked
#: and the few encoded ahead of it (view prefetch).
IMAGE_PARTS_KEPT = 4


def session_options(threads: int | None = None):
    """ORT options used for both graphs: all graph optimisations, sequential execution.

    threads: intra-op threads; None = ``$MEDSAMKIT_THREADS`` or ORT's default (physical cores).
    """
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    env = os.environ.get("MEDSAMKIT_THREADS")
    n = threads if threads is not None else (int(env) if env else 0)
    if n > 0:
        so.intra_op_num_threads = n
    # No memory arena: with it ORT keeps the encoder's peak activations (~700 MiB for LiteMedSAM) for the
    # life of the process, so a server or model process held them after every session had closed. Without
    # it they go back to the heap (the server trims it on session close). Measured on 2 loaded cores, same
    # run: encoding median 3.4 s against 3.2 s with the arena, a box 114 ms against 149 ms (noise level).
    so.enable_cpu_mem_arena = False
    so.log_severity_level = 3  # errors only: ORT warns about hardware-specific NCHWc layouts otherwise
    # No busy-waiting between calls: the encoder's and the decoder's thread pools are separate, and an
    # idle pool that spins takes the cores from the other one. Measured on 2 cores (4 images x 3 rounds,
    # 5 box clicks each, quiet machine): Predictor.predict median 49-58 ms without spinning against
    # 64-76 ms with it; encoding unchanged (757-863 ms against 826-861 ms).
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return so


#: glibc's M_MMAP_THRESHOLD (mallopt parameter) and the value set by :func:`return_large_blocks_to_os`
M_MMAP_THRESHOLD, LARGE_BLOCK = -3, 1 << 20


def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:  # musl or another libc
        return None


def return_large_blocks_to_os() -> bool:
    """glibc: blocks of 1 MiB and more are mapped and unmapped on their own (a fixed mmap threshold).

    Without the ORT arena the encoder's activations (~270 MiB for LiteMedSAM) are malloc'ed per run;
    glibc's adaptive threshold (up to 32 MiB) puts them on the heap after the first free, where they
    stay and fragment. Measured (one process, 043_HC, 2 cores): RSS after an encode 345-400 MiB and
    a second encode's peak 616-666 MiB without it; 186-215 and 458-483 MiB with it. Set before the first encode
    (:meth:`OnnxPromptableModel.encode`), not before loading: creating the sessions with it took
    ~0.1 CPU s more. The first run's page faults cost a one-shot ``segment`` ~0.25 CPU s; setting it
    only after the first encode avoids that but the model process then peaked ~30 MiB higher.
    Returns whether it was set (False off glibc)."""
    libc = _libc()
    return bool(libc is not None and libc.mallopt(M_MMAP_THRESHOLD, LARGE_BLOCK))


def trim_heap() -> None:
    """Collect garbage and give the heap's free pages back to the OS (glibc; a no-op elsewhere)."""
    gc.collect()
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


class OnnxPromptableModel:
    """Same interface as PromptableModel (encode/decode/transform/spec/model_id/...), run by ORT.

    Built either torch-free from the shipped graphs and a numpy state dict (:func:`.graphs.bind`,
    see :func:`medsamkit.fast.torchfree.load_litemedsam`), or from a torch model's exported graphs
    (``reference`` is then that torch model). Embeddings and logits are numpy arrays.
    """

    engine = "onnx"

    def __init__(self, spec, graphs: "tuple", checkpoint: str | None, checkpoint_sha256: str | None,
                 low_res_size: int, precision: str = "fp32", threads: int | None = None, reference=None):
        """graphs: (encoder, decoder image part, decoder prompt part), each a file path or model bytes."""
        import onnxruntime as ort

        from ..preprocess import ModelTransform

        self.spec = spec
        self.transform = reference.transform if reference is not None else ModelTransform(spec.transform)
        self.checkpoint = checkpoint
        self.checkpoint_sha256 = checkpoint_sha256
        self.low_res_size = int(low_res_size)
        self.reference = reference
        self.precision = precision
        enc, dec_image, dec_prompt = (g if isinstance(g, (bytes, bytearray)) else str(g) for g in graphs)
        self.encoder_path = enc if isinstance(enc, str) else "<shipped graph, bound in memory>"
        self.decoder_paths = tuple(p if isinstance(p, str) else "<shipped graph, bound in memory>"
                                   for p in (dec_image, dec_prompt))
        so = session_options(threads)
        providers = ["CPUExecutionProvider"]
        self._enc = ort.InferenceSession(enc, so, providers=providers)
        self._dec_image = ort.InferenceSession(dec_image, so, providers=providers)
        self._dec_prompt = ort.InferenceSession(dec_prompt, so, providers=providers)
        # image part of the decoder per embedding (no mask prompt), for the last few embeddings used:
        # id(embedding) -> (weakref to it, stamp of its values, arrays); a lock because a background
        # thread may encode (a view prefetch) while another decodes
        self._image_parts: "OrderedDict[int, tuple]" = OrderedDict()
        self._lock = threading.Lock()
        self.encoder_calls = 0
        self.image_part_calls = 0
        self.fallback_reason: str | None = None

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def device(self) -> str:
        return "cpu"

    @property
    def net(self):
        if self.reference is None:
            raise AttributeError("this ONNX model was built without torch; load it with engine='torch' for the network")
        return self.reference.net

    @property
    def model_id(self) -> str:
        """Cache identity: kind, weights, engine and precision (never mixed with another model in a cache)."""
        if self.reference is not None:
            return f"{self.reference.model_id}:onnx-{self.precision}"
        return f"{self.kind}:{(self.checkpoint_sha256 or 'random')[:16]}:onnx-{self.precision}:{id(self):x}"

    # --- inference ---------------------------------------------------------------------------------
    def encode(self, model_input: np.ndarray) -> np.ndarray:
        """(3, S, S) float32 -> image embedding (1, 256, E, E) float32 numpy array.

        Also runs the decoder's image part for it (a few ms), so that every click on this
        embedding, the first included, runs only the prompt part."""
        x = np.ascontiguousarray(model_input, dtype=np.float32)[None]
        if self.encoder_calls == 0:
            return_large_blocks_to_os()
        (emb,) = self._enc.run(None, {"image": x})
        self.encoder_calls += 1
        self._image_part(emb, emb)
        return emb

    def _image_part(self, embedding, array: np.ndarray, mask_input=None) -> list:
        """The decoder's image part for ``embedding`` (whose numpy data is ``array``); remembered
        per embedding object when there is no mask prompt (the mask changes the dense prompt)."""
        if mask_input is not None:
            feeds = {"embedding": array, "mask_input": mask_input, "has_mask_input": np.ones(1, np.float32)}
            return self._dec_image.run(None, feeds)
        key = id(embedding)
        # the same object with the same values (a cheap check that it was not overwritten in place)
        stamp = (float(array.sum(dtype=np.float64)), array.reshape(-1)[::4099].tobytes())
        with self._lock:
            hit = self._image_parts.get(key)
            if hit is not None and hit[0]() is embedding and hit[1] == stamp:
                self._image_parts.move_to_end(key)
                return hit[2]
        low = self.low_res_size
        feeds = {"embedding": array, "mask_input": np.zeros((1, 1, low, low), np.float32),
                 "has_mask_input": np.zeros(1, np.float32)}
        parts = self._dec_image.run(None, feeds)
        self.image_part_calls += 1
        try:
            ref = weakref.ref(embedding)
        except TypeError:  # an object without weak references (e.g. a plain ndarray): not remembered
            return parts
        with self._lock:
            self._image_parts[key] = (ref, stamp, parts)
            while len(self._image_parts) > IMAGE_PARTS_KEPT:
                self._image_parts.popitem(last=False)
        return parts

    def decode(self, embedding, coords=None, labels=None, box=None, mask_input=None, multimask: bool = False):
        """As PromptableModel.decode: returns (logits (M, L, L), iou (M,)) numpy arrays, M = 3 or 1.

        embedding: (1, 256, E, E) numpy array (or a torch tensor from the torch engine's cache).
        """
        if (coords is None or len(coords) == 0) and box is None:  # not reachable through the Predictor
            raise InputError("Give a box or at least one point to segment.")
        arr = embedding.detach().cpu().numpy() if hasattr(embedding, "detach") else np.asarray(embedding)
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        feeds = decoder_prompt_arrays(coords, labels, box, mask_input, self.low_res_size)
        mask = feeds["mask_input"] if mask_input is not None else None
        keys, k0, v0, q0 = self._image_part(embedding, arr, mask)
        low_res, iou = self._dec_prompt.run(None, {
            "keys": keys, "k0": k0, "v0": v0, "q0": q0,
            "point_coords": feeds["point_coords"], "point_labels": feeds["point_labels"]})
        sl = slice(1, None) if multimask else slice(0, 1)
        return low_res[0, sl], iou[0, sl]

    def __repr__(self) -> str:
        return f"OnnxPromptableModel({self.kind}, {self.precision}, {os.path.basename(str(self.encoder_path))})"
