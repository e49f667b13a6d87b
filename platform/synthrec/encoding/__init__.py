"""Vectorized reversible encoding of Arrow tables for the GAN, behind one `Codec` protocol.

arrow.py (column helpers), codecs.py (the protocol; numeric and one-hot codecs), ids.py
(catalog-scale ids), id_search.py (choosing an id per generated row), encoder.py (the
`Encoder`). No nn.Module and no Ray here.
"""

from synthrec.config import EncoderConfig
from synthrec.encoding.codecs import Codec, DecodeRows, DiscreteCodec, NumericCodec, Span
from synthrec.encoding.encoder import Encoder
from synthrec.encoding.ids import IdCodec

__all__ = [
    "Codec",
    "DecodeRows",
    "DiscreteCodec",
    "Encoder",
    "EncoderConfig",
    "IdCodec",
    "NumericCodec",
    "Span",
]
