from setuptools import find_packages, setup

DOCS = [
    "mkdocs>=1.6",
    "mkdocstrings[python]>=0.26",
    "mkdocs-jupyter>=0.25",
    "nbclient>=0.10",
    "nbformat>=5.10",
    "ipykernel>=6.29",
    "matplotlib>=3.8",
]

# the coded page of the scheduler's dashboard (distributed's dashboard needs bokeh too)
DASHBOARD = ["bokeh>=3.1"]

# CodedShuffle.from_dask on dask DataFrames (pandas partitions)
DATAFRAME = ["dask[dataframe]"]

setup(
    name="dask_coded",
    version="0.1.0",
    description="Straggler-proof matrix products and cheap shuffles on Dask, with codes",
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["dask_coded", "dask_coded.*"]),
    package_data={"dask_coded": ["coded.yaml"]},
    python_requires=">=3.10",
    license="BSD-3-Clause",
    install_requires=[
        # the oldest pair is tested in CI (.ci/oldest.txt): keep the two in step
        "dask[array]>=2025.12.0,<2027",
        "distributed>=2025.12.0,<2027",
        "numpy>=1.26",
        "scipy>=1.11",
        "pyyaml",
    ],
    extras_require={
        # the tests build the docs site and run the notebooks, so they need DOCS too
        "test": ["pytest>=8", "hypothesis>=6.100", "pytest-timeout", "scikit-learn>=1.4"]
        + DOCS + DASHBOARD + DATAFRAME + ["selenium>=4.20"],
        "docs": DOCS,
        "dashboard": DASHBOARD,
        "dataframe": DATAFRAME,
        "bench": ["matplotlib>=3.8"],
    },
    entry_points={"console_scripts": ["dask-coded = dask_coded.__main__:main"]},
)
