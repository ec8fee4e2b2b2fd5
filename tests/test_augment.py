"""Augmentation transforms: every registered one validated and applied (shape, dtype, seeded
determinism), each checked against torchvision's own functional ops or an exact property, and
spec-style validation with located errors and suggestions."""

from __future__ import annotations

import pytest
import torch
import torchvision.transforms.v2.functional as TF
from torchvision.transforms import InterpolationMode

from cnnspec.errors import SpecError
from cnnspec.spec.source import load_text
from cnnspec.train.augment import (AUGMENTATIONS, Augmenter, ColorJitter, RandomAffine, RandomCrop, RandomErasing,
                                   RandomHorizontalFlip, RandomResizedCrop, RandomRotation, parse_augment,
                                   parse_augment_flag, render_augment_markdown, step_seed, validate_augment)
from cnnspec.train.data import load_split

# One typical configuration per registered type; a new type without one fails the first test.
EXAMPLES = {
    "random_crop": {"size": 28, "padding": 4},
    "random_horizontal_flip": {"p": 0.5},
    "random_vertical_flip": {"p": 0.5},
    "random_rotation": {"degrees": 15},
    "random_affine": {"degrees": 10, "translate": [0.1, 0.1], "scale": [0.9, 1.1], "shear": 5},
    "color_jitter": {"brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.1},
    "random_erasing": {"p": 0.5, "scale": [0.02, 0.2], "ratio": [0.3, 3.3]},
    "random_resized_crop": {"size": 24, "scale": [0.5, 1.0]},
}


@pytest.fixture(scope="module")
def digits() -> torch.Tensor:
    """64 real MNIST digits (uint8, 64 x 1 x 28 x 28) from the built-in sample."""
    images, _ = load_split("mnist_sample", None, train=True)
    return images[::60][:64].clone()


@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    """RGB images with smooth colour gradients and edges (uint8, 8 x 3 x 32 x 32)."""
    generator = torch.Generator().manual_seed(1)
    coarse = torch.randint(0, 256, (8, 3, 4, 4), generator=generator, dtype=torch.uint8).float()
    return torch.nn.functional.interpolate(coarse, size=(32, 32), mode="bilinear").round().to(torch.uint8)


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_every_registered_type_has_an_example() -> None:
    assert set(EXAMPLES) == set(AUGMENTATIONS)
    assert {"random_crop", "random_horizontal_flip", "random_rotation", "random_affine", "color_jitter",
            "random_erasing", "random_resized_crop"} <= set(AUGMENTATIONS)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
@pytest.mark.parametrize("kind", ["digits", "photos"])
def test_each_transform_keeps_uint8_batches_and_is_a_function_of_its_seed(name: str, kind: str, request) -> None:
    images = request.getfixturevalue(kind)
    before = images.clone()
    transform = AUGMENTATIONS[name].model_validate({"type": name, **EXAMPLES[name]})
    first = transform.apply(images, _generator(3))
    again = transform.apply(images, _generator(3))
    other = transform.apply(images, _generator(4))
    height, width = transform.output_size(*images.shape[-2:])
    assert first.dtype == torch.uint8 and first.shape == (images.shape[0], images.shape[1], height, width)
    assert torch.equal(first, again), "same generator seed, same output"
    assert not torch.equal(first, other), "another seed draws other parameters"
    assert torch.equal(images, before), "the input batch is never modified"
    if (height, width) == tuple(images.shape[-2:]):
        assert not torch.equal(first, images), "the transform changed something"


def test_random_crop_output_is_a_window_of_the_padded_image(digits: torch.Tensor) -> None:
    out = RandomCrop(size=28, padding=3).apply(digits, _generator())
    padded = TF.pad(digits, [3, 3, 3, 3])
    offsets = set()
    for image, crop in zip(padded, out):
        found = [(top, left) for top in range(7) for left in range(7)
                 if torch.equal(TF.crop(image, top, left, 28, 28), crop)]
        assert found, "every output is one 28x28 window of the padded digit"
        offsets.add(found[0])
    assert len(offsets) > 10, "each image draws its own offset"


@pytest.mark.parametrize("mode", ["edge", "reflect", "symmetric"])
def test_random_crop_padding_modes_match_torchvision(digits: torch.Tensor, mode: str) -> None:
    out = RandomCrop(size=[32, 30], padding=[1, 2], padding_mode=mode).apply(digits, _generator())
    reference = TF.pad(digits, [1, 2, 1, 2], padding_mode=mode)  # left/right 1, top/bottom 2 -> 30 x 32
    assert out.shape == (64, 1, 32, 30) and torch.equal(out, reference)


def test_random_crop_refuses_a_size_larger_than_the_image(digits: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="pad_if_needed"):
        RandomCrop(size=30).apply(digits, _generator())
    assert RandomCrop(size=30, pad_if_needed=True).apply(digits, _generator()).shape == (64, 1, 30, 30)


def test_horizontal_flip_mirrors_each_image_or_keeps_it(digits: torch.Tensor) -> None:
    out = RandomHorizontalFlip(p=0.5).apply(digits, _generator())
    flipped = [torch.equal(o, i.flip(-1)) for o, i in zip(out, digits)]
    kept = [torch.equal(o, i) for o, i in zip(out, digits)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 16 < sum(flipped) < 48, "about half of 64 images are mirrored"
    assert torch.equal(RandomHorizontalFlip(p=1.0).apply(digits, _generator()), digits.flip(-1))
    assert torch.equal(RandomHorizontalFlip(p=0.0).apply(digits, _generator()), digits)


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
def test_random_affine_equals_torchvision_affine_per_image(photos: torch.Tensor, interpolation: str) -> None:
    """A range of one value draws that value, so each image must equal torchvision's functional
    affine with those parameters (translation and fill excluded: checked below)."""
    transform = RandomAffine(degrees=[25, 25], scale=[1.2, 1.2], shear=[10, 10, -5, -5],
                             interpolation=interpolation, fill=[10, 200, 30])
    out = transform.apply(photos, _generator())
    mode = InterpolationMode.NEAREST if interpolation == "nearest" else InterpolationMode.BILINEAR
    reference = TF.affine(photos, angle=25.0, translate=[0, 0], scale=1.2, shear=[10.0, -5.0],
                          interpolation=mode, fill=[10, 200, 30])
    differ = (out.int() - reference.int()).abs()
    assert differ.max() <= 1 and (differ > 0).float().mean() < 0.002


def test_random_affine_translation_is_whole_pixels_within_the_range(digits: torch.Tensor) -> None:
    out = RandomAffine(degrees=0, translate=[0.1, 0.1]).apply(digits, _generator())
    # torchvision shifts the whole batch once per candidate (dx, dy); each image must equal one of them
    candidates = [TF.affine(digits, angle=0.0, translate=[dx, dy], scale=1.0, shear=[0.0])
                  for dx in range(-3, 4) for dy in range(-3, 4)]
    for index, moved in enumerate(out):
        shifts = [k for k, shifted in enumerate(candidates) if torch.equal(shifted[index], moved)]
        assert shifts, "a shift of at most 0.1 x 28 = 2.8 -> 3 pixels"


def test_random_rotation_of_90_degrees_is_rot90(digits: torch.Tensor) -> None:
    out = RandomRotation(degrees=[90, 90]).apply(digits, _generator())
    assert torch.equal(out, torch.rot90(digits, 1, dims=(-2, -1))), "counter-clockwise, as torchvision"
    assert torch.equal(out, TF.rotate(digits, 90.0))


def test_random_rotation_angles_differ_per_image(digits: torch.Tensor) -> None:
    batch = digits[:1].expand(16, -1, -1, -1)
    out = RandomRotation(degrees=30, interpolation="bilinear").apply(batch, _generator())
    assert len({o.numpy().tobytes() for o in out}) == 16


@pytest.mark.parametrize("name, adjust", [
    ("brightness", TF.adjust_brightness), ("contrast", TF.adjust_contrast),
    ("saturation", TF.adjust_saturation), ("hue", TF.adjust_hue),
])
def test_color_jitter_with_a_fixed_factor_equals_torchvision(photos: torch.Tensor, name: str, adjust) -> None:
    factor = 0.2 if name == "hue" else 1.6
    out = ColorJitter(**{name: [factor, factor]}).apply(photos, _generator())
    reference = adjust(photos, factor)
    assert (out.int() - reference.int()).abs().max() <= 1  # torchvision truncates; we round


@pytest.mark.parametrize("factor", [-0.5, -0.35, 0.05, 0.45])
def test_hue_rotation_equals_torchvision_all_round_the_colour_circle(photos: torch.Tensor, factor: float) -> None:
    out = ColorJitter(hue=[factor, factor]).apply(photos, _generator())
    assert (out.int() - TF.adjust_hue(photos, factor).int()).abs().max() <= 1


def test_color_jitter_draws_a_factor_per_image(digits: torch.Tensor) -> None:
    ones = torch.full((32, 1, 4, 4), 100, dtype=torch.uint8)
    out = ColorJitter(brightness=0.5).apply(ones, _generator())
    values = out[:, 0, 0, 0].float()
    assert len(set(values.tolist())) > 20 and 50 <= values.min() and values.max() <= 150
    assert torch.equal(ColorJitter(saturation=0.9, hue=0.4).apply(digits, _generator()), digits), \
        "saturation and hue leave grey images alone, as torchvision does"


def test_random_erasing_blanks_one_box_of_the_drawn_size(digits: torch.Tensor) -> None:
    white = torch.full((64, 1, 28, 28), 255, dtype=torch.uint8)
    out = RandomErasing(p=1.0, scale=[0.1, 0.2], ratio=[0.5, 2.0], value=7).apply(white, _generator())
    for image in out[:, 0]:
        rows, cols = torch.nonzero(image == 7, as_tuple=True)
        height, width = int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
        assert len(rows) == height * width, "one filled rectangle"
        assert 0.1 * 784 - 28 <= height * width <= 0.2 * 784 + 28  # the area before rounding each side
        assert 0.5 / 1.3 <= height / width <= 2.0 * 1.3
    assert torch.equal(RandomErasing(p=0.0).apply(digits, _generator()), digits)


def test_random_resized_crop_of_the_whole_image_is_a_resize(photos: torch.Tensor) -> None:
    same = RandomResizedCrop(size=32, scale=[1.0, 1.0], ratio=[1.0, 1.0]).apply(photos, _generator())
    assert torch.equal(same, photos)
    bigger = RandomResizedCrop(size=48, scale=[1.0, 1.0], ratio=[1.0, 1.0]).apply(photos, _generator())
    reference = TF.resize(photos, [48, 48], interpolation=InterpolationMode.BILINEAR, antialias=False)
    assert (bigger.int() - reference.int()).abs().max() <= 1


def test_random_resized_crop_boxes_follow_torchvision_rules() -> None:
    transform = RandomResizedCrop(size=28, scale=[0.3, 0.6], ratio=[0.75, 1.333])
    boxes = transform.boxes(500, 28, 28, _generator())
    top, left, height, width = boxes.unbind(1)
    assert (top >= 0).all() and (left >= 0).all() and (top + height <= 28).all() and (left + width <= 28).all()
    area = height * width / 784
    assert area.min() >= 0.3 - 0.05 and area.max() <= 0.6 + 0.05
    assert len(set(boxes[:, 0].tolist())) > 5, "offsets vary"


def test_the_step_seed_depends_on_every_part() -> None:
    seeds = {step_seed(s, e, t, r) for s in (0, 1) for e in (0, 1) for t in (0, 1, 2) for r in (0, 1)}
    assert len(seeds) == 24 and all(0 <= s < 2**63 for s in seeds)


def test_the_augmenter_is_seeded_by_seed_epoch_and_step(digits: torch.Tensor) -> None:
    augment = Augmenter(parse_augment([{"type": "random_crop", "size": 28, "padding": 2},
                                       {"type": "random_rotation", "degrees": 10}]), seed=5)
    torch.manual_seed(0)
    first = augment(digits, epoch=1, step=7)
    torch.manual_seed(123)  # the global stream plays no part
    assert torch.equal(first, augment(digits, epoch=1, step=7))
    assert not torch.equal(first, augment(digits, epoch=1, step=8))
    assert not torch.equal(first, augment(digits, epoch=2, step=7))
    assert not torch.equal(first, Augmenter(augment.transforms, seed=6)(digits, epoch=1, step=7))


def _diagnostics(text: str) -> list[str]:
    document = load_text(text, "spec.yaml")
    _, problems = validate_augment(document.data["augment"],
                                   lambda path, key=False: document.locate(("augment", *path), key=key))
    return [p.render(text.splitlines()) for p in problems]


def test_validation_locates_every_problem_and_suggests_names() -> None:
    rendered = _diagnostics(
        "augment:\n"
        "  - {type: random_crop, size: 28, paddin: 2}\n"
        "  - {type: random_horizontal_flp, p: 0.5}\n"
        "  - {type: random_rotation, degrees: [20, 10]}\n"
        "  - {type: color_jitter, hue: 0.7}\n"
        "  - {type: random_erasing, p: 1.5}\n"
        "  - {size: 3}\n")
    assert rendered[0].splitlines()[0] == (
        "spec.yaml:2:35: error: unknown field 'paddin' for random_crop augmentation #1")
    assert "hint: did you mean 'padding'?" in rendered[0]
    assert rendered[1].splitlines()[0] == "spec.yaml:3:12: error: unknown augmentation type 'random_horizontal_flp'"
    assert "hint: did you mean 'random_horizontal_flip'?" in rendered[1]
    assert rendered[2].splitlines()[0] == ("spec.yaml:4:38: error: degrees must be [min, max] with min <= max "
                                           "(random_rotation augmentation #3)")
    assert rendered[3].startswith("spec.yaml:5:31: error: hue must be less than or equal to 0.5")
    assert rendered[4].startswith("spec.yaml:6:31: error: p must be less than or equal to 1")
    assert rendered[5].startswith("spec.yaml:7:5: error: augment entry 6 has no 'type'")
    assert len(rendered) == 6


def test_an_augment_flag_is_a_yaml_mapping_or_a_bare_name() -> None:
    entries = parse_augment_flag(["{type: random_crop, size: 28, padding: 2}", "random_horizontal_flip"])
    assert entries == [{"type": "random_crop", "size": 28, "padding": 2}, {"type": "random_horizontal_flip"}]
    with pytest.raises(SpecError) as caught:
        parse_augment_flag(["{type: random_crop, size: 28, padding: -1}"])
    assert caught.value.render().startswith("--augment #1:1:40: error: padding")


def test_the_catalogue_lists_every_type_with_its_torchvision_class() -> None:
    text = render_augment_markdown()
    for name, cls in AUGMENTATIONS.items():
        assert f"#### `{name}`" in text and f"torchvision.transforms.v2.{cls.torchvision_class}" in text
    assert "| `padding_mode` |" in text


def test_readme_augmentation_reference_is_generated_from_the_classes() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    start = readme.index("<!-- augmentations:begin -->") + len("<!-- augmentations:begin -->\n")
    end = readme.index("<!-- augmentations:end -->")
    assert readme[start:end].strip() == render_augment_markdown().strip(), (
        "README's augmentation reference is stale: regenerate it with `cnnspec augmentations --format markdown`")
