"""Config variants, overrides and the LOSO fold-parallel choice."""

import pytest

from edmdbn_jax import train
from edmdbn_jax.configs import edmdbn as configs


def test_paper_variant_is_the_paper():
  c = configs.get_config("paper")
  m = c.model
  assert (m.embed_dim, tuple(m.depths), tuple(m.num_heads)) == (
      128, (2, 2, 6), (4, 8, 16))
  assert tuple(m.window_size) == (8, 7, 7) and tuple(m.patch_size) == (8, 4, 4)
  assert m.drop_path_rate == 0.2 and m.mlp_ratio == 4.0 and m.qkv_bias
  assert m.drop_rate == 0.0 and m.attn_drop_rate == 0.0  # no dropout
  assert m.patch_norm and m.accumulated_attention and m.init == "paper"
  assert c.train.class_weights == "auto"  # weighted CE on SAMM only
  assert c.data.image_size == 224 and c.data.num_frames == 8
  t = c.train
  assert (t.epochs, t.warmup_epochs, t.batch_size, t.learning_rate) == (
      60, 15, 4, 5e-5)


def test_overrides_and_unknown_keys():
  c = configs.get_config("tiny,accumulated_attention=False,num_classes=3")
  assert c.variant == "tiny" and not c.model.accumulated_attention
  assert c.model.num_classes == 3
  assert configs.get_config("paper,epochs=7").train.epochs == 7
  with pytest.raises(ValueError, match="nonsense"):
    configs.get_config("paper,nonsense=1")
  # A misspelt boolean is an error, not False.
  assert configs.get_config("tiny,accumulated_attention=off").model[
      "accumulated_attention"] is False
  with pytest.raises(ValueError, match=r"accumulated_attention is true or "
                     r"false, got 'Ture'"):
    configs.get_config("tiny,accumulated_attention=Ture")
  with pytest.raises(ValueError, match="variant"):
    configs.get_config("huge")


def test_auto_fold_parallelism_is_bounded():
  c = configs.get_config("tiny")
  c.train.fold_parallel = "auto"
  n = train.fold_parallelism(c, 26)
  assert 1 <= n <= 26
  c.train.fold_parallel = "3"
  assert train.fold_parallelism(c, 26) == 3
  assert train.fold_parallelism(c, 2) == 2


@pytest.mark.parametrize("n,limit,devices,size,groups", [
    (26, 15, 1, 13, [13, 13]),      # not 15 + 11: one compiled shape
    (26, 8, 1, 7, [7, 7, 7, 5]),    # last group padded to 7, not 8+8+8+2
    (26, 26, 1, 26, [26]),
    (26, 1, 1, 1, [1] * 26),
    (3, 2, 2, 2, [2, 1]),           # fold-sharded over 2 devices
    (5, 4, 2, 4, [4, 1]),           # 3 would lose the fold sharding
    (7, 6, 4, 4, [4, 3]),           # gcd(6, 4) = 2: 4 = 2 folds per device
    (1, 8, 1, 1, [1]),
])
def test_balanced_fold_groups(n, limit, devices, size, groups):
  got = train.balanced_group_size(n, limit, devices)
  assert got == size and got <= limit
  assert [min(got, n - g) for g in range(0, n, got)] == groups
  assert len(groups) == -(-n // limit)  # never more groups than the limit
