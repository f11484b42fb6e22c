"""The architectures this library knows, one record each (see ``encdec.registry``).

Importing this package registers them; ``encdec/__init__.py`` does so, so every ``encdec``
import sees the full registry. Adding an architecture: its record here (config class, schema,
roles, decoder layout, tokenizer family, legacy names), its modules in each framework and one
registration per framework (``docs/architectures.md``).
"""

from encdec.architectures.bert import BERT, BertConfig
from encdec.architectures.bart import BART, MBART, BartConfig, MBartConfig
from encdec.architectures.bert_generation import BERT_GENERATION, BertGenerationConfig
from encdec.architectures.electra import ELECTRA, ElectraConfig
from encdec.architectures.gpt2 import GPT2, GPT2Config
from encdec.architectures.roberta import CAMEMBERT, ROBERTA, XLM_ROBERTA, CamembertConfig, RobertaConfig, XLMRobertaConfig

__all__ = ["BART", "BERT", "BERT_GENERATION", "CAMEMBERT", "ELECTRA", "GPT2", "MBART", "ROBERTA", "XLM_ROBERTA", "BartConfig",
           "BertConfig", "BertGenerationConfig", "CamembertConfig", "ElectraConfig", "GPT2Config", "MBartConfig", "RobertaConfig",
           "XLMRobertaConfig"]
