"""TimeInv: a per-timestep token embedding for a concept `<name>`, plus LoRA on spatial attention.

A concept is a table V of shape (buckets, d): denoising timestep t (0..999) reads row
`timestep_bucket(t, buckets) = t * buckets // 1000`, i.e. equal-width buckets of 1000 / buckets
timesteps (buckets = 1 is plain textual inversion, one vector for every step). The row replaces
the concept's token embedding before the text encoder runs, so the encoder's context mixes it
with the prompt as it would a real word. Every row starts from the class word's embedding.

In a prompt `<name>` becomes a marker: a single-token word that occurs nowhere else in that
prompt. Its embedding is swapped for the table row, which works for any encoder that accepts
`inputs_embeds` without touching its vocabulary.

LoRA (peft) goes on q/k/v/out of the SPATIAL transformer blocks' self- (attn1) and cross-attention
(attn2) of the video U-Net (LORA_TARGETS has narrower choices: cross-attention only, or only its
key and value); the temporal attention and every base weight stay frozen. One adapter
per concept, named after it, active only while a prompt names the concept.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from story.models.t2v import pad_states

NUM_TRAIN_TIMESTEPS = 1000
DEFAULT_BUCKETS = 10
CONCEPT_PATTERN = re.compile(r"<([A-Za-z0-9_][A-Za-z0-9_-]*)>")
# Punctuation is one token in word-piece, BPE and whitespace tokenizers alike.
MARKERS: tuple[str, ...] = ("~", "^", "|", "@", "#", "$", "%", "&", "*", "+", "=", "\\")
_SPATIAL_BLOCKS = (
    r"^(?:down_blocks\.\d+|up_blocks\.\d+|mid_block)\.attentions\.\d+\.transformer_blocks\.\d+"
)
SPATIAL_ATTENTION = _SPATIAL_BLOCKS + r"\.attn[12]\.(?:to_q|to_k|to_v|to_out\.0)$"
# Where a concept's LoRA can go (ConceptParams.lora_targets): every projection of the spatial
# self- and cross-attention, only the cross-attention's, or only the cross-attention's key and
# value (the projections of the text states, as in Custom Diffusion).
LORA_TARGETS: dict[str, str] = {
    "attention": SPATIAL_ATTENTION,
    "cross": _SPATIAL_BLOCKS + r"\.attn2\.(?:to_q|to_k|to_v|to_out\.0)$",
    "cross_kv": _SPATIAL_BLOCKS + r"\.attn2\.(?:to_k|to_v)$",
}


class ConceptTokenError(ValueError):
    """A prompt, class word or encoder cannot carry a concept token."""


def timestep_bucket(t: torch.Tensor | int, buckets: int) -> torch.Tensor | int:
    """Row of the table used at timestep t: equal-width buckets over 0..999."""
    if isinstance(t, torch.Tensor):
        return (t.long() * buckets // NUM_TRAIN_TIMESTEPS).clamp(0, buckets - 1)
    return min(max(int(t) * buckets // NUM_TRAIN_TIMESTEPS, 0), buckets - 1)


def concept_names(prompt: str) -> list[str]:
    """Distinct concept names `<name>` in a prompt, in order of first use."""
    return list(dict.fromkeys(CONCEPT_PATTERN.findall(prompt)))


def content_ids(encoder, text: str) -> list[int]:
    """Token ids of `text` without the encoder's special tokens (those of an empty text)."""
    ids, mask = encoder.tokenize([text], 64)
    empty_ids, empty_mask = encoder.tokenize([""], 64)
    special = set(empty_ids[0][empty_mask[0].bool()].tolist())
    return [i for i in ids[0][mask[0].bool()].tolist() if i not in special]


def class_word_embedding(encoder, word: str) -> torch.Tensor:
    """(d,) mean input embedding of the class word's tokens: where every table row starts."""
    ids = content_ids(encoder, word)
    if not word.strip() or not ids:
        raise ConceptTokenError(f"class word {word!r} gives no tokens to start the concept from")
    table = encoder.token_embeddings()
    with torch.no_grad():
        index = torch.tensor(ids, device=table.weight.device)
        return table(index).float().mean(0).cpu()


class TimeInvTable(nn.Module):
    """The per-timestep embedding table V (buckets, d) of one concept."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        if table.dim() != 2 or table.shape[0] < 1:
            raise ConceptTokenError(
                f"a concept table must be (buckets, d), got {tuple(table.shape)}"
            )
        self.table = nn.Parameter(table.detach().clone().float())

    @classmethod
    def from_vector(cls, vector: torch.Tensor, buckets: int) -> TimeInvTable:
        """Every bucket starts from the same vector (the class word's embedding)."""
        if buckets < 1:
            raise ConceptTokenError(f"buckets must be >= 1, got {buckets}")
        return cls(vector.detach().float().reshape(1, -1).repeat(buckets, 1))

    @property
    def buckets(self) -> int:
        return int(self.table.shape[0])

    def forward(self, timesteps: torch.Tensor) -> torch.Tensor:
        """(B,) timesteps -> (B, d) rows."""
        return self.table[timestep_bucket(timesteps.to(self.table.device), self.buckets)]


@dataclass
class ConceptTokens:
    """Tokenised prompts with the positions of each concept's marker: slots[name] is (B, L)."""

    ids: torch.Tensor
    mask: torch.Tensor
    slots: dict[str, torch.Tensor]


def _marker_ids(encoder) -> list[tuple[str, int]]:
    out = []
    for marker in MARKERS:
        ids = content_ids(encoder, marker)
        if len(ids) == 1:
            out.append((marker, ids[0]))
    return out


def tokenize_concepts(
    encoder, prompts: Sequence[str], max_length: int, known: Sequence[str] | None = None
) -> ConceptTokens:
    """Tokenise prompts whose `<name>`s become markers; `known` (if given) lists loadable names."""
    markers = _marker_ids(encoder)
    texts, chosen = [], []
    for prompt in prompts:
        names = concept_names(prompt)
        if known is not None:
            unknown = [n for n in names if n not in known]
            if unknown:
                raise ConceptTokenError(
                    f"prompt {prompt!r} names concept(s) {['<' + n + '>' for n in unknown]} "
                    f"that are not loaded (loaded: {sorted(known)})"
                )
        used = set(content_ids(encoder, CONCEPT_PATTERN.sub(" ", prompt)))
        free = [(m, i) for m, i in markers if i not in used]
        if len(free) < len(names):
            raise ConceptTokenError(f"prompt {prompt!r}: too many concepts for the free markers")
        mapping = {name: free[k] for k, name in enumerate(names)}
        text = CONCEPT_PATTERN.sub(lambda m, pick=mapping: f" {pick[m.group(1)][0]} ", prompt)
        texts.append(" ".join(text.split()))
        chosen.append({name: marker_id for name, (_, marker_id) in mapping.items()})
    ids, mask = encoder.tokenize(texts, max_length)
    slots: dict[str, torch.Tensor] = {}
    for row, mapping in enumerate(chosen):
        for name, marker_id in mapping.items():
            if name not in slots:
                slots[name] = torch.zeros_like(ids, dtype=torch.bool)
            slots[name][row] = (ids[row] == marker_id) & mask[row].bool()
    return ConceptTokens(ids, mask, slots)


def concept_states(
    encoder,
    tokens: ConceptTokens,
    tables: Mapping[str, TimeInvTable],
    timesteps: torch.Tensor,
    length: int,
) -> torch.Tensor:
    """(B, length, d) text states with each concept slot holding its table row for t (B,)."""
    embeds = encoder.token_embeddings()(tokens.ids)
    for name, slot in tokens.slots.items():
        rows = tables[name](timesteps).to(embeds.device, embeds.dtype)
        embeds = torch.where(slot[..., None].to(embeds.device), rows[:, None, :], embeds)
    states = encoder.hidden_states(inputs_embeds=embeds, attention_mask=tokens.mask)
    return pad_states(states, tokens.mask, length)


class ConceptConditioner:
    """Per-timestep text states of prompts naming concepts: `t -> (B, L, d)`, cached per bucket.

    The sampler asks for the states of each step right before it runs the U-Net on them, so
    `on_timestep(t)`, called first, can set up the U-Net for that step (e.g. which LoRA is on).
    """

    def __init__(
        self,
        encoder,
        tokens: ConceptTokens,
        tables: Mapping[str, TimeInvTable],
        length: int,
        device: torch.device | str = "cpu",
        on_timestep: Callable[[int], None] | None = None,
    ) -> None:
        self.on_timestep = on_timestep
        self.encoder = encoder
        self.tokens = tokens
        self.tables = {name: tables[name] for name in tokens.slots}
        self.length = length
        self.device = device
        self.cache: dict[tuple[int, ...], torch.Tensor] = {}
        self.encoder_runs = 0

    def __call__(self, t: int | torch.Tensor) -> torch.Tensor:
        t = int(t)
        if self.on_timestep is not None:
            self.on_timestep(t)
        key = tuple(int(timestep_bucket(t, table.buckets)) for table in self.tables.values())
        if key not in self.cache:
            batch = self.tokens.ids.shape[0]
            with torch.no_grad():
                states = concept_states(
                    self.encoder, self.tokens, self.tables, torch.full((batch,), t), self.length
                )
            self.cache[key] = states.to(self.device)
            self.encoder_runs += 1
        return self.cache[key]


# --- LoRA on spatial attention --------------------------------------------------------------


def spatial_attention_names(unet: nn.Module, targets: str = SPATIAL_ATTENTION) -> list[str]:
    """Module names a LoRA pattern targets (default: q/k/v/out of the spatial attn1 and attn2)."""
    pattern = re.compile(targets)
    return [name for name, _ in unet.named_modules() if pattern.fullmatch(name)]


def _lora_layers(unet: nn.Module) -> Iterator[nn.Module]:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return (m for m in unet.modules() if isinstance(m, BaseTunerLayer))


def lora_adapters(unet: nn.Module) -> set[str]:
    """Names of the LoRA adapters injected into the U-Net."""
    names: set[str] = set()
    for layer in _lora_layers(unet):
        names.update(layer.lora_A.keys())
    return names


def add_lora(
    unet: nn.Module,
    adapter: str,
    rank: int = 4,
    alpha: float = 4.0,
    targets: str = SPATIAL_ATTENTION,
) -> None:
    """Inject a zero-initialised LoRA adapter (B = 0, so the U-Net is unchanged until trained)
    into the layers whose names match the `targets` pattern (a value of LORA_TARGETS)."""
    from peft import LoraConfig, inject_adapter_in_model

    if adapter in lora_adapters(unet):
        raise ConceptTokenError(f"the U-Net already has a LoRA adapter named {adapter!r}")
    if not spatial_attention_names(unet, targets):
        raise ConceptTokenError(f"the U-Net has no attention layers matching {targets!r}")
    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=targets, init_lora_weights=True)
    inject_adapter_in_model(config, unet, adapter_name=adapter)
    set_active_loras(unet, [])


def remove_lora(unet: nn.Module, adapter: str) -> None:
    """Delete an adapter from every layer that has it."""
    for layer in _lora_layers(unet):
        if adapter in layer.lora_A:
            layer.delete_adapter(adapter)
    configs = getattr(unet, "peft_config", None)
    if isinstance(configs, dict):
        configs.pop(adapter, None)
        if not configs:
            del unet.peft_config
    set_active_loras(unet, [])


def lora_parameters(unet: nn.Module, adapter: str) -> list[nn.Parameter]:
    """The adapter's trainable LoRA matrices."""
    return [
        p
        for name, p in unet.named_parameters()
        if ".lora_" in name and name.rsplit(".", 2)[-2] == adapter
    ]


def lora_state_dict(unet: nn.Module, adapter: str) -> dict[str, torch.Tensor]:
    """The adapter's weights keyed without the adapter name (portable between concepts)."""
    from peft import get_peft_model_state_dict

    state = get_peft_model_state_dict(unet, adapter_name=adapter)
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


def load_lora(
    unet: nn.Module,
    adapter: str,
    state: Mapping[str, torch.Tensor],
    rank: int,
    alpha: float,
    targets: str = SPATIAL_ATTENTION,
) -> None:
    """Inject an adapter and load its weights; every weight must find its layer."""
    from peft import set_peft_model_state_dict

    add_lora(unet, adapter, rank, alpha, targets)
    result = set_peft_model_state_dict(unet, dict(state), adapter_name=adapter)
    unexpected = list(getattr(result, "unexpected_keys", []) or [])
    if unexpected:
        raise ConceptTokenError(f"LoRA weights do not fit this U-Net: {unexpected[:3]}")
    set_active_loras(unet, [])


def set_active_loras(unet: nn.Module, adapters: Sequence[str]) -> None:
    """Enable exactly these adapters (none: the base U-Net); base weights stay frozen."""
    adapters = list(adapters)
    for layer in _lora_layers(unet):
        if adapters:
            layer.enable_adapters(True)
            layer.set_adapter(adapters)
        else:
            layer.enable_adapters(False)
    for name, p in unet.named_parameters():
        if ".lora_" in name:
            p.requires_grad_(name.rsplit(".", 2)[-2] in adapters)


@contextmanager
def active_loras(unet: nn.Module, adapters: Sequence[str]) -> Iterator[None]:
    """Inside the block exactly `adapters` are enabled; afterwards none."""
    set_active_loras(unet, adapters)
    try:
        yield
    finally:
        set_active_loras(unet, [])
