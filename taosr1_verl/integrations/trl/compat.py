"""Make TRL 0.27 (the version verl 0.9.1's ``fsdp`` extra pins) importable next to transformers 5.

TRL 0.27 asks transformers' private ``_is_package_available(name)`` whether optional packages (weave,
deepspeed, llm_blender, ...) are installed and uses the answer as a bool. transformers 5 returns a tuple
``(found, version)`` from it, which is always true, so TRL then imports packages that are not there:
``from trl import DPOTrainer`` fails with "No module named 'weave'" on verl's own GPU stack
(transformers 5.9.0 + trl 0.27.0). TRL 1.x asks correctly; this fix changes nothing there. Its trainers
also write to ``model.warnings_issued``, which transformers 5 models no longer have
(:func:`prepare_model_for_trl`).

Example::

    >>> from taosr1_verl.integrations.trl.compat import fix_optional_import_checks
    >>> fix_optional_import_checks() in (True, False)
    True
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)


def _as_bool(check: Callable[..., object]) -> Callable[..., object]:
    @functools.wraps(check)
    def wrapper(*args: object, **kwargs: object) -> object:
        found = check(*args, **kwargs)
        return bool(found[0]) if isinstance(found, tuple) else found

    wrapper._taosr1_bool = True  # type: ignore[attr-defined]
    return wrapper


def fix_optional_import_checks() -> bool:
    """Make every ``trl.import_utils.is_*_available`` return a bool; True if any returned a tuple before.

    Call it before importing ``trl.trainer`` (the trainers bind these checks when their modules load).
    """
    import trl.import_utils as iu

    fixed = False
    for name in dir(iu):
        check = getattr(iu, name)
        if not (name.startswith("is_") and name.endswith("_available") and callable(check)):
            continue
        if getattr(check, "_taosr1_bool", False):
            continue
        try:
            answer = check()
        except TypeError:  # a check that needs arguments (a minimum version): wrap it all the same
            answer = ()
        if isinstance(answer, tuple):
            setattr(iu, name, _as_bool(check))
            fixed = True
    if fixed:
        logger.debug("TRL optional-package checks return bools now (TRL 0.x with transformers 5)")
    return fixed


def prepare_model_for_trl(model: object) -> object:
    """Give a transformers 5 model the ``warnings_issued`` dict TRL 0.27's trainers write to (transformers 5
    removed it: "'Qwen2ForCausalLM' object has no attribute 'warnings_issued'"). Returns ``model``."""
    if not hasattr(model, "warnings_issued"):
        model.warnings_issued = {}  # type: ignore[attr-defined]
    return model
