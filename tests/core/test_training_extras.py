"""Training helpers: a reproducible batch stage (``key=``) and AugMix's Jensen-Shannon consistency for user
training loops (``JSDViews`` + ``jsd_loss``), checked against a hand / scipy computation and a tiny run."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from augstudio.core.base.errors import RecipeError
from augstudio.core.engine.batch_stage import BatchStage, apply_batch_ops, to_soft
from augstudio.core.engine.recipe import Recipe
from augstudio.core.engine.training import JSD_COPY_OFFSET, JSDViews, jsd_loss

torch.set_num_threads(1)

MIX = {"seed": 7, "steps": [], "batch": [{"op": "mixup", "alpha": 1.0}, {"op": "cutmix", "p": 0.5}]}


def _batch():
    g = torch.Generator().manual_seed(0)
    return torch.rand(6, 3, 16, 16, generator=g), torch.tensor([0, 1, 2, 0, 1, 2])


# -- key= --------------------------------------------------------------------------------------------------
def test_batch_key_gives_the_same_mix_whatever_the_global_seed_and_call_history():
    x, y = _batch()
    recipe = Recipe.from_dict(MIX)
    torch.manual_seed(1)
    mix = recipe.batch_transform(3)
    mix(x, y)  # earlier calls move the counter; they must not matter with a key
    a_img, a_soft = mix(x, y, key=(2, 5))
    rec_a = mix.stage.last_records
    torch.manual_seed(99)
    state = torch.get_rng_state()
    b_img, b_soft = recipe.batch_transform(3)(x, y, key=(2, 5))
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is left alone
    assert torch.equal(a_img, b_img) and torch.equal(a_soft, b_soft)
    assert rec_a[0]["applied"] and not torch.equal(a_img, x)  # mixup ran (p = 1)
    c_img, _ = recipe.batch_transform(3)(x, y, key=(2, 6))
    assert not torch.equal(a_img, c_img)  # another batch, other draws
    # without a key: fresh draws on every call
    n1, _ = mix(x, y)
    n2, _ = mix(x, y)
    assert not torch.equal(n1, n2)


def test_batch_key_is_the_seeding_key_evaluate_used():
    """``key=("evaluate", seed, epoch, start)`` draws exactly what evaluate drew with its own key string."""
    x, y = _batch()
    recipe = Recipe.from_dict(MIX)
    stage = BatchStage(recipe, 3)
    got_img, got_soft = stage(x, y, key=("evaluate", 0, 1, 16))
    ref_img, ref_soft, _ = apply_batch_ops(stage.ops, x, to_soft(y, 3), recipe.seed, "evaluate:0:1:16")
    assert torch.equal(got_img, ref_img) and torch.equal(got_soft, ref_soft)
    # the soft labels are still a distribution over the three classes
    assert torch.allclose(got_soft.sum(1), torch.ones(6))


@pytest.mark.parametrize("key", [1.5, (), ("a", None), [0, 0.5]])
def test_bad_batch_key_is_explained(key):
    x, y = _batch()
    with pytest.raises(RecipeError, match=r"key=.*use an int, a string or a tuple"):
        Recipe.from_dict(MIX).batch_transform(3)(x, y, key=key)


# -- jsd_loss ----------------------------------------------------------------------------------------------
def _js_scipy(logits, weight):
    from scipy.special import softmax
    from scipy.stats import entropy

    probs = [softmax(lg.astype(np.float64), axis=1) for lg in logits]
    m = np.clip(sum(probs) / 3, 1e-7, 1.0)
    per_item = [sum(entropy(p[i], m[i]) for p in probs) / 3 for i in range(probs[0].shape[0])]
    return weight * float(np.mean(per_item)), probs, m


def test_jsd_loss_matches_scipy_kl_to_the_mixture():
    g = torch.Generator().manual_seed(3)
    logits = [torch.randn(5, 4, generator=g, dtype=torch.float64) * 2 for _ in range(3)]
    got = float(jsd_loss(*logits, weight=12.0))
    want, probs, m = _js_scipy([lg.numpy() for lg in logits], 12.0)
    assert got == pytest.approx(want, rel=1e-9)
    # the generalised JS divergence is also H(M) - mean H(p_i)
    from scipy.stats import entropy

    alt = np.mean([entropy(m[i]) - sum(entropy(p[i]) for p in probs) / 3 for i in range(5)])
    assert got / 12.0 == pytest.approx(alt, rel=1e-6)
    assert float(jsd_loss(*logits, weight=1.0)) == pytest.approx(want / 12.0, rel=1e-9)


def test_jsd_loss_hand_values_zero_clamp_and_gradient():
    big = 60.0
    one_hot = lambda k: torch.tensor([[big, -big]]) if k == 0 else torch.tensor([[-big, big]])  # noqa: E731
    # clean says class 0, both views say class 1: M = (1/3, 2/3); JS = (log 3 + 2 log 3/2) / 3
    hand = (math.log(3) + 2 * math.log(1.5)) / 3
    assert float(jsd_loss(one_hot(0), one_hot(1), one_hot(1), weight=1.0)) == pytest.approx(hand, rel=1e-5)
    # agreeing predictions: no consistency loss, even when M has exact zeros (clamped, finite)
    same = torch.randn(4, 10, generator=torch.Generator().manual_seed(0))
    assert float(jsd_loss(same, same, same)) == pytest.approx(0.0, abs=1e-6)
    assert float(jsd_loss(one_hot(0), one_hot(0), one_hot(0))) == pytest.approx(0.0, abs=1e-6)
    # symmetric in its three arguments, and it pulls the predictions together
    a, b, c = (torch.randn(3, 5, generator=torch.Generator().manual_seed(s)) for s in (1, 2, 3))
    assert float(jsd_loss(a, b, c)) == pytest.approx(float(jsd_loss(c, a, b)), rel=1e-6)
    b = b.clone().requires_grad_(True)
    jsd_loss(a, b, c).backward()
    assert torch.isfinite(b.grad).all() and b.grad.abs().sum() > 0


# -- JSDViews ----------------------------------------------------------------------------------------------
AUGMIX = {"seed": 4, "steps": [{"op": "augmix", "jsd": True, "jsd_weight": 6.0}]}


@pytest.fixture(scope="module")
def coffee():
    from PIL import Image
    from skimage.data import coffee

    img = Image.fromarray(coffee()).resize((48, 32), Image.BILINEAR)
    return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).contiguous()


def test_views_are_clean_and_two_independent_recipe_copies(coffee):
    views = JSDViews(Recipe.from_dict(AUGMIX))
    recipe = Recipe.from_dict(AUGMIX)
    clean, a1, a2 = views.views(coffee, item="cups/01.png", copy=3)
    assert torch.equal(clean, coffee)
    assert torch.equal(a1, recipe.apply(coffee, item="cups/01.png", copy=3))
    assert torch.equal(a2, recipe.apply(coffee, item="cups/01.png", copy=3 + JSD_COPY_OFFSET))
    assert not torch.equal(a1, a2) and not torch.equal(a1, coffee)
    assert a1.shape == a2.shape == coffee.shape and a1.dtype == torch.uint8
    assert views.weight == 6.0 and Recipe.from_dict({"steps": []}).jsd_views().weight == 12.0
    with pytest.raises(RecipeError, match="load_recipe"):
        JSDViews({"steps": []})
    # as a transform: reproducible from torch.manual_seed, fresh per call, picklable (DataLoader workers)
    torch.manual_seed(11)
    first = views(coffee)
    second = views(coffee)
    torch.manual_seed(11)
    again = pickle.loads(pickle.dumps(views))(coffee)
    assert all(torch.equal(p, q) for p, q in zip(first, again))
    assert not torch.equal(first[1], second[1])
    # post= runs on each view
    floats = JSDViews(Recipe.from_dict(AUGMIX), post=lambda t: t.float() / 255).views(coffee, "x", 0)
    assert all(v.dtype == torch.float32 and float(v.max()) <= 1.0 for v in floats)


class _Digits(torch.utils.data.Dataset):
    def __init__(self, x, y, transform):
        self.x, self.y, self.transform = x, y, transform

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.transform(self.x[i]), int(self.y[i])


def _to_float(t):
    return t.float() / 255.0


def test_training_with_jsd_views_runs_and_lowers_the_loss():
    """The docstring's loop on sklearn's digits: cross-entropy on the clean images + jsd_loss on the views."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images[:240] * 255 / 16).round().to(torch.uint8)[:, None]  # 1 x 8 x 8 gray
    y = torch.tensor(d.target[:240])
    views = JSDViews(Recipe.from_dict({"seed": 0, "steps": [{"op": "augmix", "jsd": True, "width": 2, "severity": 2}]}),
                     post=_to_float)
    loader = torch.utils.data.DataLoader(_Digits(x, y, views), batch_size=40, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 64, 10))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    epochs = []
    for _epoch in range(6):
        total = jsd_total = 0.0
        for (clean, aug1, aug2), labels in loader:
            logits = model(torch.cat([clean, aug1, aug2]))
            lc, l1, l2 = logits.split(len(labels))
            cons = jsd_loss(lc, l1, l2, weight=views.weight)
            loss = F.cross_entropy(lc, labels) + cons
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(labels)
            jsd_total += cons.item() * len(labels)
        epochs.append((total / len(y), jsd_total / len(y)))
    print("\n(loss, jsd term) per epoch:", [(round(a, 3), round(b, 3)) for a, b in epochs])
    assert all(math.isfinite(a) and b > 0 for a, b in epochs)
    assert epochs[-1][0] < 0.6 * epochs[0][0]
    with torch.no_grad():
        acc = float((model(_to_float(x)).argmax(1) == y).float().mean())
    assert acc > 0.8
