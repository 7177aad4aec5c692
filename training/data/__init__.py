"""The data block API: six small answers that make a DataBunch.

1. where the inputs are  — `ItemList.from_folder / from_csv / from_rows / from_list`
2. how to split          — `RandomSplitter`, `ColumnSplitter`, `FolderSplitter`, `FileListSplitter`
3. how to label          — `TagsFromColumn`, `FromColumn`, `FromFolderName`, `FromPathFunction`,
                           `MaskFromFunction` (segmentation masks), `PointsFromColumns` (pose)
4. which transforms      — `get_transforms(...)`, applied with `.transform(tfms, size=...)`
5. a test set            — `.add_test(items)`
6. the loaders           — `.databunch(bs=..., num_workers=...)`, then `.normalize(stats)`
"""

from training.data.block import ItemList, LabelledData, SplitItems
from training.data.bunch import DataBunch, DeviceLoader, Stats, imagenet_stats
from training.data.datasets import ImageDataset
from training.data.labellers import (
    CategoryEncoder,
    FromColumn,
    FromFolderName,
    FromPathFunction,
    MultiCategoryEncoder,
    TagsFromColumn,
)
from training.data.masks import MaskEncoder, MaskFromFunction, MaskInFolder, read_codes
from training.data.points import PointsEncoder, PointsFromColumns, image_sizes
from training.data.splitters import ColumnSplitter, FileListSplitter, FolderSplitter, RandomSplitter
from training.data.transforms import get_transforms

__all__ = [
    "CategoryEncoder",
    "ColumnSplitter",
    "DataBunch",
    "DeviceLoader",
    "FileListSplitter",
    "FolderSplitter",
    "FromColumn",
    "FromFolderName",
    "FromPathFunction",
    "ImageDataset",
    "ItemList",
    "LabelledData",
    "MaskEncoder",
    "MaskFromFunction",
    "MaskInFolder",
    "MultiCategoryEncoder",
    "PointsEncoder",
    "PointsFromColumns",
    "RandomSplitter",
    "SplitItems",
    "Stats",
    "TagsFromColumn",
    "get_transforms",
    "image_sizes",
    "imagenet_stats",
    "read_codes",
]
