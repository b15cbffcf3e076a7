"""taosr1-verl: TaoSR1 (Taobao's label-first reasoning relevance model) as a plugin for verl 0.9.1.

The task logic (schema, prompts, response parser, reward, samplers, CumPT) imports no verl, vLLM or TRL;
those integrations live in ``taosr1_verl.integrations`` and in backends chosen at run time.
"""

from taosr1_verl.response import ParsedResponse, format_response, parse_response
from taosr1_verl.rewards import compute_score
from taosr1_verl.schema import ESCI, TAOSR1, WANDS, LabelLevel, LabelSchema, get_schema

__version__ = "0.1.0"

__all__ = [
    "ESCI",
    "TAOSR1",
    "WANDS",
    "LabelLevel",
    "LabelSchema",
    "ParsedResponse",
    "compute_score",
    "format_response",
    "get_schema",
    "parse_response",
]
