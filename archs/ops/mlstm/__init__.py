"""mLSTM (xLSTM's matrix LSTM): sequential ``mlstm_ref`` (the definition, with the max-stabilizer),
the exact chunkwise form ``chunk_mlstm`` (pure PyTorch, CPU and GPU) and the one-token
``mlstm_step`` that decoding uses. State: (C (B, H, K, V), n (B, H, K), m (B, H)).

No GPU kernel is dispatched yet: the xLSTM CUDA/Triton kernels are not part of the ``[cuda]`` extra,
so CUDA tensors take the same pure-PyTorch chunkwise path.
"""
from .chunk import chunk_mlstm
from .ref import mlstm_ref, mlstm_step

__all__ = ["chunk_mlstm", "mlstm_ref", "mlstm_step"]
