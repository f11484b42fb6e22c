"""generate() gives the same sequences in PyTorch, TensorFlow and Flax on the same weights.

(Each framework is also compared with the reference's PyTorch generate in its own folder.)
"""

import numpy as np
import pytest

from adapters import FRAMEWORKS, load_adapter
from encdec.naming.schema import schema_for
from encdec.testing import deterministic_state_dict, tiny_config, tiny_inputs

SETTINGS = {
    "greedy": dict(max_new_tokens=8),
    "beam": dict(max_new_tokens=8, num_beams=3, num_return_sequences=2, length_penalty=0.7,
                 no_repeat_ngram_size=2),
}


@pytest.fixture(scope="module")
def built():
    cache = {}

    def get(fw, arch):
        if (fw, arch) not in cache:
            config = tiny_config(arch)
            state = deterministic_state_dict(schema_for(config), seed=1)
            adapter = load_adapter(fw)
            cache[(fw, arch)] = (adapter, adapter.build(config, state), tiny_inputs(config, batch=3))
        return cache[(fw, arch)]

    return get


@pytest.mark.parametrize("mode", sorted(SETTINGS))
@pytest.mark.parametrize("arch", ["bert2bert", "bert2gpt2"])
def test_sequences_identical_in_every_framework(built, arch, mode):
    results = {}
    for fw in FRAMEWORKS:
        adapter, model, inputs = built(fw, arch)
        results[fw] = adapter.generate(model, {k: inputs[k] for k in ("input_ids", "attention_mask")},
                                       **SETTINGS[mode])
    for fw in FRAMEWORKS[1:]:
        np.testing.assert_array_equal(results[fw], results["pt"], err_msg=f"{fw} vs pt, {arch}, {mode}")
    assert results["pt"].shape[0] == 3 * (2 if mode == "beam" else 1)
