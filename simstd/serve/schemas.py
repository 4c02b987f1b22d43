"""Request and response bodies (pydantic), which also make the OpenAPI schema."""
from __future__ import annotations

from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field


#: The one rule for k, the CLI's too (simstd query -k): a server limit refuses, a small index caps.
K_RULE = ("Number of results. Above the server's max_k it is refused (400). Above the number of items the search "
          "can return (the targets' items; for an id query, the item itself left out) it is capped at that "
          "number: the response's query.k says how many came back, query.k_requested what was asked.")


class SearchRequest(BaseModel):
    """One query: exactly one of ``text``, ``vector``, ``image`` or ``id``."""

    model_config = ConfigDict(extra="forbid")

    text: Optional[str] = Field(None, description="Text to embed with the index's encoder.")
    vector: Optional[list[float]] = Field(None, description="A query embedding (normalised on arrival).")
    image: Optional[str] = Field(None, description="An image as base64 (or a data: URL); "
                                                   "POST /search/image takes a file upload instead.")
    id: Optional[int] = Field(None, description="An indexed item as the query (itself left out).")
    query_modality: Optional[str] = Field(
        None, description="Modality of the query: text for text, image for images, the item's own for "
                          "an id; for a vector default text.")
    k: int = Field(10, ge=1, description=K_RULE)
    targets: Optional[list[str]] = Field(None, description="Only return these modalities (default: all).")
    raw: bool = Field(False, description="Rank by raw cosine instead of the standardized score.")
    min_prob: Optional[float] = Field(None, description="Only return hits whose match probability p_match is at "
                                                        "least this, in [0, 1] (needs the uncertainty model).")


class QueryInfo(BaseModel):
    kind: str
    query_modality: str
    k: int = Field(description="Results returned: k_requested, capped at the items the search can return.")
    k_requested: int = Field(description="The k asked for.")
    targets: list[str]
    standardized: bool


class Hit(BaseModel):
    rank: int
    id: int
    modality: str
    score: float = Field(description="Standardized score (the raw cosine when standardized is false).")
    raw_score: float = Field(description="Cosine similarity.")
    confidence: Optional[float] = Field(None, description="Label-free posterior share of the hit "
                                                          "(when an uncertainty model is fitted).")
    p_match: Optional[float] = Field(None, description="Probability that the hit matches the query (when an "
                                                       "uncertainty model is fitted; /info's probabilities says "
                                                       "whether it is label-free or calibrated on gold pairs).")
    metadata: dict[str, Any]
    image_url: Optional[str] = None
    thumbnail_url: Optional[str] = None


class SearchResponse(BaseModel):
    query: QueryInfo
    hits: list[Hit]
    modality_share: dict[str, float] = Field(description="Share of each modality among the hits.")
    version: str = Field(description="Index version that answered.")
    took_ms: float


class Health(BaseModel):
    status: str
    version: str
    loaded_at: float
    reloads: int
    pending_version: Optional[str] = None
    pending_reason: Optional[str] = None


class FitMethod(BaseModel):
    """The fitted standardizer's method (simstd.Standardizer.describe)."""

    method: str = Field(description='"paper" (Yamashita et al. 2025) or "hubness" (CSLS-corrected, then standardized).')
    settings: dict[str, Any] = Field(description="hubness_k (K, hubness only), sample (pseudo queries per modality: "
                                                 'a count, "auto" or null = all), target_se (auto\'s target error).')
    summary: str = Field(description="The method and its settings in one line.")
    citation: str = Field(description="The work the fitted method implements.")


class Info(BaseModel):
    name: str
    version: str
    dim: int
    factory: str
    model: Optional[str]
    ntotal: int
    counts: dict[str, int]
    fingerprint: str
    standardized: bool
    stale: bool = Field(description="Items were added after the fit (it still serves; refit with simstd fit).")
    method: Optional[FitMethod] = Field(description="What is fitted (None: not fitted, raw scores only).")
    standardizer: Optional[list[dict[str, Any]]]
    confidence: bool
    probabilities: Optional[str] = Field(None, description='"label-free" or "calibrated on N gold pairs": what '
                                                           "p_match rests on (None: no uncertainty model).")
    encoder: Optional[str]
    encoder_note: Optional[str]
    limits: dict[str, int]


class KnnRequest(BaseModel):
    """clip-retrieval's ``/knn-service`` body. Unknown fields are accepted and ignored."""

    model_config = ConfigDict(extra="allow")

    text: Optional[str] = None
    image: Optional[str] = Field(None, description="base64 image")
    image_url: Optional[str] = Field(None, description="refused: this server does not fetch URLs")
    embedding_input: Optional[list[float]] = None
    query_modality: Optional[str] = Field(None, description="simstd: modality of embedding_input (default text)")
    modality: str = Field("image", description='"image" or "text" restricts the targets; "all" (simstd): '
                                               "the merged standardized ranking")
    num_images: int = Field(40, ge=0)
    num_result_ids: Optional[int] = Field(None, ge=0)
    indice_name: Optional[str] = None
    # Accepted for compatibility, ignored (documented in docs/serve.md).
    use_mclip: Any = None
    deduplicate: Any = None
    use_safety_model: Any = None
    use_violence_detector: Any = None
    aesthetic_score: Any = None
    aesthetic_weight: Any = None


class MetadataRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    ids: list[int]
    indice_name: Optional[str] = None
