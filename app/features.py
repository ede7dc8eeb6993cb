"""The features this build of Quarry serves, in the order their routers, OpenAPI
tags and commands appear. Part of the composition root (with `app.main` and
`app.routers`): the only core modules that import features."""

from app.wiring import Feature
from auth.feature import AUTH
from data_api.datasets.feature import DATASETS
from data_api.documents.feature import DOCUMENTS
from data_api.entries.feature import ENTRIES
from data_api.rows.feature import ROWS
from data_api.search.feature import SEARCH
from management.feature import MANAGEMENT

FEATURES: tuple[Feature, ...] = (AUTH, MANAGEMENT, DOCUMENTS, DATASETS, ENTRIES, SEARCH, ROWS)
