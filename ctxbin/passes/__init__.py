"""Graph transformations (each module one pass; :mod:`.onnx_to_qnn` chains them)."""

__all__: list[str] = []
