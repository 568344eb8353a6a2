"""Every artifact the serving pods need (the checkpoint, the LoRA adapters): what the download Job fetches
(``artifacts.py``: the manifest and the report), whether an adapter or a merged fine-tune will serve
(``preflight.py``) and what the Job's report means for status (``outcome.py``). Pure: the Job's I/O is
cli/download.py."""
