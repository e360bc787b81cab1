"""Optional integrations with training frameworks.

Each submodule imports its framework lazily and only when it is imported itself:
``import ncinspect`` never loads torch. ``ncinspect.integrations.torch`` (extra
``ncinspect[torch]``) captures a snapshot from a PyTorch model and data loader, or measures
it directly (``measure``); ``ncinspect.integrations.distributed`` merges meters across
``torch.distributed`` ranks; ``ncinspect.integrations.lightning`` (extra
``ncinspect[lightning]``) is a Lightning callback measuring every k epochs;
``ncinspect.integrations.transformers`` (extra ``ncinspect[transformers]``) is a Hugging Face
``TrainerCallback`` measuring at each evaluation (sequence classifiers and causal LMs).
"""
