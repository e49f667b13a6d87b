"""Batched top-k over a loaded `Recommender`: the serving path of /v1/recommendations.

The implementation is `synthrec.recommender.recommend`, the same code that answers
`Recommender.recommend` (CLI, evaluation), so serving and the library cannot drift apart.
"""

from synthrec.recommender.recommend import Answer, BatchRecommender

__all__ = ["Answer", "BatchRecommender"]
