"""Running graphs: :mod:`.session` picks the backend (:mod:`.emulator` or :mod:`.htp`)."""

__all__: list[str] = []
