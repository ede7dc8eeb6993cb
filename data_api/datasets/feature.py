"""What the datasets feature contributes to the app: datasets, tags, shares."""

from app.wiring import Feature
from data_api.datasets.lifecycle import lifecycle
from data_api.datasets.router import router

DATASETS = Feature(
    name="datasets",
    routers=(router,),
    tags=(
        {"name": "datasets", "description": "Datasets: catalogue, metadata, items, subsets."},
        {"name": "tags", "description": "Tags: catalogue, acquiring, dataset tags, access."},
        {"name": "shares", "description": "Sharing a dataset with other users."},
    ),
    lifecycle=lifecycle,
)
