"""The synthrec Serve application entry: app builders for `serve run` / `serve deploy`.

serve/config.yaml deploys three applications on one proxy (the gateway on /, the Generator on
/v1/synthetic, the Recommender on /v1/recommendations). Its import paths point into the
installed package (`synthrec.serving.app:build_*`), which every cluster node has; the same
builders are importable from here when running from a checkout:

    serve run serve.app:build_generator generator_uri=/path/to/model   # one app, on /
    serve run serve/config.yaml                                        # all three

Each builder takes ServeConfig keys as its args (validated, unknown keys rejected).
"""

from synthrec.serving.app import (  # noqa: F401
    GATEWAY_APP,
    GENERATOR_APP,
    RECOMMENDER_APP,
    ROUTE_PREFIXES,
    build_apps,
    build_gateway,
    build_generator,
    build_recommender,
    deploy,
)
