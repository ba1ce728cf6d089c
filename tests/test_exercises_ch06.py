"""The checkers of notebook 06 accept the reference solutions and reject wrong answers."""

import torch

from pt_helpers.exercises import ch06


def reference_layer_values(flat, n_layers, n_kv_heads, layer):
    n, width = flat.shape
    w = width // (2 * n_layers)  # n_kv_heads · head_dim
    return flat[:, (2 * layer + 1) * w : (2 * layer + 2) * w].reshape(n, n_kv_heads, w // n_kv_heads).transpose(0, 1)


def test_check_1():
    assert ch06.check_1(46080)
    assert not ch06.check_1(3840)  # a soft prompt (input layer only)
    assert not ch06.check_1(23040)  # keys only
    assert not ch06.check_1("many")


def test_check_2():
    assert ch06.check_2(reference_layer_values)

    def layer_keys(flat, n_layers, n_kv_heads, layer):  # a typical slip: the keys instead of the values
        w = flat.shape[1] // (2 * n_layers)
        return flat[:, 2 * layer * w : (2 * layer + 1) * w].reshape(flat.shape[0], n_kv_heads, -1).transpose(0, 1)

    feedback = ch06.check_2(layer_keys)
    assert not feedback and "KEYS" in feedback.message

    def query_heads(flat, n_layers, n_kv_heads, layer):  # splits into the 4 query heads, not the 2 key/value heads
        return reference_layer_values(flat, n_layers, 2 * n_kv_heads, layer)

    assert not ch06.check_2(query_heads)
    assert not ch06.check_2(lambda flat, L, H, layer: torch.zeros(1))
    assert not ch06.check_2(lambda flat, L, H, layer: 1 / 0)


def test_check_3():
    n = 22_713_216
    assert ch06.check_3(n * 12 / 2**20, n)
    assert not ch06.check_3(n * 8 / 2**20, n)
    assert not ch06.check_3(n * 3 / 2**20, n)
    assert not ch06.check_3(1.0, n)


def test_check_4_predict_then_run():
    right = 6 * 2 * 4 * (384 + 384)
    assert ch06.check_4(right) and ch06.check_4(right, measured=right)
    assert not ch06.check_4(right, measured=right * 2)  # the measurement was of another configuration
    assert not ch06.check_4(right // 2)  # one factor only
    assert not ch06.check_4(6 * 2 * 384 * 384)  # the full matrices
    assert not ch06.check_4(2 * 4 * 768)  # one layer
    assert not ch06.check_4("a few")
