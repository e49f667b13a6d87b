"""Feature order survives a save/load: it is the order of the embedding tables."""

import json

import pyarrow as pa

from synthrec.recommender.data import FeatureCodec


def test_feature_codec_keeps_column_order_through_sorted_json():
    table = pa.table(
        {"segment": ["new", "power"], "gender": ["F", "M"], "region": ["w", "e"], "age": [20, 30]}
    )
    codec = FeatureCodec.fit(table, ("segment", "gender", "region", "age"))
    back = FeatureCodec.from_dict(json.loads(json.dumps(codec.to_dict(), sort_keys=True)))
    assert list(back.categorical) == [
        "segment",
        "gender",
        "region",
        "age",
    ]  # few-level ints embed too
    assert back.cat_sizes == codec.cat_sizes
    assert (back.encode(table)[0] == codec.encode(table)[0]).all()
