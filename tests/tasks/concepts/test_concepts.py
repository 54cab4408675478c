"""Concepts: images -> pack -> load -> render `<name>`; refusals and bad image folders."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from story.models.t2v import StructureT2V, random_tiny
from story.models.temporal import TEMPORAL_TYPES
from story.models.timeinv import active_loras, lora_adapters
from story.tasks.concepts.decoder import adapted_names
from story.tasks.concepts.images import read_concept_images
from story.tasks.concepts.pack import ConceptPack, list_packs
from story.tasks.concepts.params import ConceptError, ConceptParams
from story.tasks.concepts.runtime import load_concepts, render_with_concepts, unload_concepts
from story.tasks.concepts.trainer import train_concept
from story.tasks.concepts.training_data import PseudoVideos, TrainingClip
from story.tasks.hashing import sha256_file
from story.tasks.provenance.checkpoint_identity import checkpoint_fingerprint, model_fingerprint
from story.tasks.render.synthesize import synthesize
from story.tasks.world import miniworld
from tests.models.t2v_stubs import HashTextEncoder


def flat_depth(frames: np.ndarray) -> np.ndarray:
    return np.zeros(frames.shape[:3], np.float32)


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(seed: int = 0) -> StructureT2V:
    bundle = random_tiny(text_dim=16, frames=4, seed=seed).eval()
    bundle.set_text_encoder(HashTextEncoder(16))
    return bundle


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "bob"
    folder.mkdir()
    for i, background in enumerate(("grass", "snow", "sand")):
        spec = miniworld.sample_scene(
            i,
            frames=1,
            height=32,
            width=32,
            n_objects=1,
            shape="sphere",
            colour="red",
            texture="striped",
            secondary="white",
            background=background,
        )
        Image.fromarray(miniworld.render(spec).rgb[0]).save(folder / f"bob_{i}.png")
    return folder


def test_train_save_load_and_render_a_concept(images: Path, tmp_path: Path) -> None:
    model = tiny()
    params = ConceptParams(method="timeinv_lora", steps=3, batch=2, buckets=4, log_every=1)
    result = train_concept(
        model, "bob", images, "sphere", params, out=tmp_path / "packs" / "bob", depth=flat_depth
    )
    assert lora_adapters(model.unet) == set(), "training must leave the model unchanged"
    assert [row["step"] for row in result.loss_curve] == [1, 2, 3]
    pack = ConceptPack.load(tmp_path / "packs" / "bob")
    assert pack.token == "<bob>" and pack.table.shape == (4, 16) and pack.lora
    assert not torch.allclose(pack.table, pack.table[:1].expand(4, -1)), "rows train separately"

    x, t, states = torch.randn(1, *model.latent_shape), torch.tensor([500]), torch.randn(1, 8, 16)
    base = model.predict(x, t, states)
    guide = np.linspace(-1, 1, 4 * 16 * 16, dtype=np.float32).reshape(4, 16, 16)
    with pytest.raises(ValueError, match="no concept pack is loaded"):
        synthesize(model, "a <bob> on the grass", guide, steps=3)
    frames = render_with_concepts(
        model, "a <bob> on the grass", guide, {"bob": tmp_path / "packs" / "bob"}, steps=3
    )
    assert frames.shape == (4, 16, 16, 3) and frames.dtype == np.uint8
    again = synthesize(model, "a <bob> on the grass", guide, steps=3)
    assert np.array_equal(frames, again), "the loaded concept stays loaded and renders the same"
    plain = synthesize(model, "a sphere on the grass", guide, steps=3)
    assert not np.array_equal(frames, plain)
    with active_loras(model.unet, ["bob"]):
        assert not torch.allclose(model.predict(x, t, states), base, atol=1e-5)
    assert torch.allclose(model.predict(x, t, states), base, atol=1e-5), "LoRA off after render"
    with pytest.raises(ConceptError, match="<alice>"):
        synthesize(model, "a <alice> on the grass", guide, steps=3)
    unload_concepts(model)
    assert lora_adapters(model.unet) == set()


def test_pack_json_carries_the_hashes(images: Path, tmp_path: Path) -> None:
    model = tiny()
    folder = model.save_pretrained(tmp_path / "ckpt")
    reloaded = StructureT2V.from_pretrained(folder, device="cpu")
    assert model_fingerprint(reloaded) == checkpoint_fingerprint(folder)
    params = ConceptParams(method="ti", steps=1, batch=1)
    out = tmp_path / "pack"
    train_concept(model, "bob", images, "sphere", params, out=out, depth=flat_depth)
    meta = json.loads((out / "concept.json").read_text())
    assert meta["base_checkpoint"] == checkpoint_fingerprint(folder)
    assert {(i["file"], i["sha256"]) for i in meta["images"]} == {
        (p.name, sha256_file(p)) for p in images.iterdir()
    }
    assert meta["weights_sha256"] == sha256_file(out / "concept.safetensors")
    assert meta["token"] == "<bob>" and meta["class_word"] == "sphere" and meta["method"] == "ti"
    assert meta["params"]["steps"] == 1 and len(meta["loss_curve"]) == 1


def test_a_pack_refuses_another_checkpoint(images: Path, tmp_path: Path) -> None:
    trained_on = tiny(seed=0)
    pack = train_concept(
        trained_on, "bob", images, "sphere", ConceptParams(method="none"), depth=flat_depth
    ).pack
    other = tiny(seed=1)
    with pytest.raises(ConceptError) as err:
        load_concepts(other, {"bob": pack})
    message = str(err.value)
    assert model_fingerprint(trained_on) in message and model_fingerprint(other) in message
    assert lora_adapters(other.unet) == set()


@pytest.mark.parametrize(
    ("method", "rows", "has_lora"),
    [("none", 1, False), ("ti", 1, False), ("ti_lora", 1, True), ("timeinv", 3, False)],
)
def test_each_method_trains_what_it_says(
    images: Path, method: str, rows: int, has_lora: bool
) -> None:
    model = tiny()
    params = ConceptParams(method=method, steps=1, batch=1, buckets=3)
    clip = TrainingClip(torch.zeros(3, 4, 16, 16), torch.zeros(1, 4, 16, 16), "a blue cube")
    result = train_concept(
        model, "bob", images, "sphere", params, depth=flat_depth, regularization=[clip]
    )
    assert result.pack.table.shape[0] == rows
    assert bool(result.pack.lora) == has_lora
    assert result.pack.meta["steps"] == (0 if method == "none" else 1)


def test_image_steps_train_a_concept_without_the_temporal_layers(
    images: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[str] = []  # temporal layers that computed (the switch wraps these forwards)
    for kind in TEMPORAL_TYPES:

        def counted(self, *args, _forward=kind.forward, **kwargs):
            ran.append(type(self).__name__)
            return _forward(self, *args, **kwargs)

        monkeypatch.setattr(kind, "forward", counted)
    model = tiny()
    clip = TrainingClip(torch.zeros(3, 4, 16, 16), torch.zeros(1, 4, 16, 16), "a blue cube")
    params = ConceptParams(method="timeinv_lora", steps=2, batch=2, pseudo_frames=1, lr_lora=1e-2)
    pack = train_concept(
        model, "bob", images, "sphere", params, depth=flat_depth, regularization=[clip]
    ).pack
    assert pack.meta["params"]["pseudo_frames"] == 1
    assert any(v.abs().sum() > 0 for k, v in pack.lora.items() if "lora_B" in k), "LoRA trained"
    assert ran == [], "image steps bypass every temporal layer"
    train_concept(
        model, "bob", images, "sphere", replace(params, pseudo_frames=0), depth=flat_depth
    )
    assert set(ran) == {t.__name__ for t in TEMPORAL_TYPES}, "video steps run them"
    with pytest.raises(ConceptError, match="pseudo_frames 5 is longer than the model's clip"):
        train_concept(
            model, "bob", images, "sphere", replace(params, pseudo_frames=5), depth=flat_depth
        )
    with pytest.raises(ConceptError, match="pseudo_frames -1"):
        ConceptParams(pseudo_frames=-1)


def test_a_concept_with_its_own_decoder_top_uses_it_only_for_its_prompts(
    images: Path, tmp_path: Path
) -> None:
    model = tiny()
    before = {n: p.detach().clone() for n, p in model.vae.named_parameters()}
    clip = TrainingClip(torch.zeros(3, 4, 16, 16), torch.zeros(1, 4, 16, 16), "a blue cube")
    params = ConceptParams(
        method="ti", steps=1, batch=1, decoder_steps=3, decoder_batch=4, decoder_lr=1e-2
    )
    pack = train_concept(
        model, "bob", images, "sphere", params, depth=flat_depth, regularization=[clip]
    ).pack
    assert pack.decoder and set(pack.decoder) == set(adapted_names(model.vae))
    assert all(not n.startswith("encoder") for n in pack.decoder), "the latent space stays"
    assert pack.meta["decoder"]["steps"] == 3 and len(pack.meta["decoder"]["loss_curve"]) == 1
    changed = [n for n, v in pack.decoder.items() if not torch.allclose(v, before[n])]
    assert changed, "the decoder top trained"
    for n, p in model.vae.named_parameters():
        assert torch.equal(p, before[n]), f"training left the model's {n} unchanged"
    pack.save(tmp_path / "bob")
    loaded = ConceptPack.load(tmp_path / "bob")
    assert loaded.decoder is not None and set(loaded.decoder) == set(pack.decoder)

    guide = np.linspace(-1, 1, 4 * 16 * 16, dtype=np.float32).reshape(4, 16, 16)
    without = ConceptPack(**{**pack.__dict__, "decoder": None, "path": None})
    plain = render_with_concepts(model, "a <bob> on the grass", guide, {"bob": without}, steps=2)
    unload_concepts(model)
    own = render_with_concepts(model, "a <bob> on the grass", guide, {"bob": loaded}, steps=2)
    assert not np.array_equal(plain, own), "the concept's decoder draws its renders"
    for n, p in model.vae.named_parameters():
        assert torch.equal(p, before[n]), f"{n} is the model's own again after the render"
    other = synthesize(model, "a sphere on the grass", guide, steps=2)
    unload_concepts(model)
    assert np.array_equal(other, synthesize(model, "a sphere on the grass", guide, steps=2))

    eve = ConceptPack(**{**loaded.__dict__, "name": "eve", "path": None})
    load_concepts(model, {"bob": loaded, "eve": eve})
    with pytest.raises(ConceptError, match="each with its own decoder"):
        synthesize(model, "a <bob> and a <eve> on the grass", guide, steps=2)
    unload_concepts(model)
    with pytest.raises(ConceptError, match="decoder_steps"):
        ConceptParams(decoder_steps=-1)


def test_lora_targets_are_saved_and_reloaded_onto_the_same_layers(
    images: Path, tmp_path: Path
) -> None:
    model = tiny()
    params = ConceptParams(method="timeinv_lora", steps=2, batch=1, lora_targets="cross_kv")
    out = tmp_path / "bob"
    trained = train_concept(model, "bob", images, "sphere", params, out=out, depth=flat_depth)
    layers = {k.split(".lora_")[0] for k in trained.pack.lora}
    assert layers and all(re.search(r"\.attn2\.to_[kv]$", layer) for layer in layers)
    guide = np.linspace(-1, 1, 4 * 16 * 16, dtype=np.float32).reshape(4, 16, 16)
    in_memory = render_with_concepts(model, "a <bob>", guide, {"bob": trained.pack}, steps=2)
    unload_concepts(model)
    from_disk = render_with_concepts(model, "a <bob>", guide, {"bob": out}, steps=2)
    assert np.array_equal(in_memory, from_disk)
    assert {n.split(".lora_")[0] for n, _ in model.unet.named_parameters() if ".lora_" in n} == {
        layer.removeprefix("base_model.model.") for layer in layers
    }
    unload_concepts(model)
    with pytest.raises(ConceptError, match="lora_targets 'everything'"):
        ConceptParams(lora_targets="everything")


def test_a_lora_limited_to_low_timesteps_is_only_on_there(images: Path) -> None:
    model = tiny()
    params = ConceptParams(method="timeinv_lora", steps=8, batch=1, lora_max_t=500, lr_lora=1e-2)
    pack = train_concept(model, "bob", images, "sphere", params, depth=flat_depth).pack
    assert pack.meta["lora"]["max_t"] == 500
    assert any(v.abs().sum() > 0 for k, v in pack.lora.items() if "lora_B" in k), "LoRA trained"
    x, states = torch.randn(1, *model.latent_shape), torch.randn(1, 8, 16)
    base = {t: model.predict(x, torch.tensor([t]), states) for t in (100, 900)}
    concepts = load_concepts(model, {"bob": pack})
    with concepts.applied("a <bob> on the grass") as conditioner:
        for t in (900, 100, 900):
            conditioner(t)  # the sampler asks for each step's states before running the U-Net
            on = not torch.allclose(model.predict(x, torch.tensor([t]), states), base[t], atol=1e-6)
            assert on == (t < 500), f"LoRA {'on' if on else 'off'} at t={t}"
    assert torch.allclose(model.predict(x, torch.tensor([100]), states), base[100], atol=1e-6)
    unload_concepts(model)
    with pytest.raises(ConceptError, match="lora_max_t"):
        ConceptParams(lora_max_t=0)


def test_registry_lists_packs(images: Path, tmp_path: Path) -> None:
    model = tiny()
    for name, method in (("bob", "ti"), ("eve", "none")):
        params = ConceptParams(method=method, steps=1, batch=1)
        train_concept(
            model, name, images, "sphere", params, out=tmp_path / "packs" / name, depth=flat_depth
        )
    rows = list_packs(tmp_path / "packs")
    assert [(r["name"], r["method"], r["images"]) for r in rows] == [
        ("bob", "ti", 3),
        ("eve", "none", 3),
    ]
    assert list_packs(tmp_path / "nowhere") == []


def test_object_masks_are_read_next_to_their_images(images: Path) -> None:
    mask = np.zeros((32, 32), np.uint8)
    mask[10:20, 12:22] = 255
    Image.fromarray(mask).save(images / "bob_1.mask.png")
    data = read_concept_images(images, size=32)
    assert [p.name for p in data.files] == ["bob_0.png", "bob_1.png", "bob_2.png"]
    assert data.masks[0] is None and data.masks[2] is None
    assert data.masks[1].sum() == 100 and data.masks[1][15, 15]


def test_zoom_out_shows_the_character_smaller_and_elsewhere_with_its_guide() -> None:
    image = np.zeros((32, 32, 3), np.uint8)
    image[..., 1] = 160  # a green field
    image[12:20, 12:20] = (220, 30, 30)  # the red character in the middle
    mask = np.zeros((32, 32), bool)
    mask[12:20, 12:20] = True

    def depth(frames: np.ndarray) -> np.ndarray:
        return np.where(frames[..., 0] > 128, 1.0, -1.0).astype(np.float32)  # near = red

    def draws(zoom_out: float) -> list[tuple[float, tuple[float, float]]]:
        params = ConceptParams(crop_scale=1.0, zoom_out=zoom_out, jitter=0.0)
        videos = PseudoVideos([image], [mask], depth, 4, 32, 32, params)
        rng = np.random.default_rng(0)
        out = []
        for _ in range(24):
            video, structure, object_mask = videos.clip(0, rng)
            inside = object_mask[0] > 0.5
            red = video[0, 0] > 0.5
            assert (video[:, 0] == video[:, -1]).all(), "a pseudo-video stands still"
            # The guide, the frames and the mask still show the character in the same place.
            assert (red == inside).float().mean() > 0.95
            assert ((structure[0, 0] > 0) == inside).float().mean() > 0.95
            rows, cols = np.nonzero(inside.numpy())
            out.append((float(inside.float().mean()), (rows.mean(), cols.mean())))
        return out

    still, zoomed = draws(0.0), draws(0.5)
    assert {round(area, 3) for area, _ in still} == {round(64 / 1024, 3)}
    assert all(area < 64 / 1024 + 0.01 for area, _ in zoomed)
    assert min(area for area, _ in zoomed) < 0.6 * 64 / 1024
    assert np.std([c for _, c in zoomed]) > 2 * np.std([c for _, c in still]) + 0.5
    with pytest.raises(ConceptError, match="zoom_out"):
        ConceptParams(zoom_out=1.0)


def test_without_augmentation_every_pseudo_video_is_the_image_as_drawn() -> None:
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    mask = np.zeros((64, 64), bool)
    mask[20:40, 10:30] = True

    def depth(frames: np.ndarray) -> np.ndarray:
        return frames[..., 0].astype(np.float32) / 127.5 - 1

    plain = PseudoVideos([image], [mask], depth, 3, 32, 32, ConceptParams(augment=False))
    augmented = PseudoVideos([image], [mask], depth, 3, 32, 32, ConceptParams())
    draws = np.random.default_rng(0)
    first = plain.clip(0, draws)
    for _ in range(5):
        video, structure, object_mask = plain.clip(0, draws)
        assert torch.equal(video, first[0]) and torch.equal(structure, first[1])
        assert torch.equal(object_mask, first[2])
    # The whole image at the model's size: the mask keeps its area (20 x 20 of 64 x 64 -> 10 x 10
    # of 32 x 32), and the frames are the image downsampled.
    assert float(first[2].sum()) == pytest.approx(100, abs=1)
    small = torch.nn.functional.interpolate(
        torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255,
        size=(32, 32),
        mode="bilinear",
        antialias=True,
    )[0]
    assert torch.allclose((first[0][:, 0] + 1) / 2, small.clamp(0, 1), atol=1e-5)
    # With augmentation the same draws give different pseudo-videos.
    views = [augmented.clip(0, np.random.default_rng(k))[0] for k in range(3)]
    assert not torch.equal(views[0], views[1]) and not torch.equal(views[1], views[2])


def test_bad_image_folders_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConceptError, match="missing.*not found"):
        read_concept_images(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConceptError, match=r"empty: no images"):
        read_concept_images(empty)
    texts = tmp_path / "texts"
    texts.mkdir()
    (texts / "notes.txt").write_text("not a picture")
    with pytest.raises(ConceptError, match=r"texts: no images .*notes.txt"):
        read_concept_images(texts)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "face.png").write_bytes(b"not a png at all")
    with pytest.raises(ConceptError, match=r"face.png: unreadable image"):
        read_concept_images(broken)
    with pytest.raises(ConceptError, match="concept name"):
        train_concept(tiny(), "bad name", broken, "sphere", ConceptParams(method="none"))


def test_regularization_clips_come_from_the_library(settings, tmp_path: Path) -> None:
    import av

    from story.models.text_encoder import load_text_encoder
    from story.tasks.concepts.training_data import regularization_clips
    from story.tasks.library.index import ClipIndex

    encoder = load_text_encoder("minilm", device="cpu")
    captions = ["a red sphere rolls on the grass", "a blue cube slides on the snow"]
    rows = []
    for i, (caption, vector) in enumerate(
        zip(captions, encoder.embed_sentences(captions), strict=True)
    ):
        uri = tmp_path / f"clip{i}.mp4"
        with av.open(str(uri), "w") as container:
            stream = container.add_stream("libx264", rate=8)
            stream.height = stream.width = 32
            stream.pix_fmt = "yuv420p"
            for t in range(8):
                frame = np.full((32, 32, 3), 30 * t, np.uint8)
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, "rgb24")))
            container.mux(stream.encode())
        rows.append(
            {
                "clip_id": f"clip-{i}",
                "uri": str(uri),
                "frame_indices": [0, 2, 4, 6],
                "caption": caption,
                "text_vector": vector.tolist(),
                "start": 0.0,
                "end": 1.0,
                "duration": 1.0,
            }
        )
    index = ClipIndex(settings.lancedb, settings.clips_table)
    index.add(rows)
    clips = regularization_clips(index, encoder, "sphere", 1, flat_depth, 4, 16, 16)
    assert [c.caption for c in clips] == [captions[0]]
    assert clips[0].video.shape == (3, 4, 16, 16) and clips[0].structure.shape == (1, 4, 16, 16)
    assert clips[0].video[:, 0].mean() < clips[0].video[:, -1].mean(), "frames in time order"
