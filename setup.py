from setuptools import find_packages, setup

setup(
    name="dask_coded",
    version="0.1.0",
    description="Straggler-proof matrix products and cheap shuffles on Dask, with codes",
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["dask_coded", "dask_coded.*"]),
    package_data={"dask_coded": ["coded.yaml"]},
    python_requires=">=3.10",
    install_requires=[
        "dask[array]>=2026.8.0,<2027",
        "distributed>=2026.8.0,<2027",
        "numpy>=1.26",
        "scipy>=1.11",
        "pyyaml",
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "hypothesis>=6.100",
            "pytest-timeout",
            "matplotlib>=3.8",
            "mkdocs>=1.6",
            "mkdocstrings[python]>=0.26",
            "nbclient>=0.10",
            "nbformat>=5.10",
            "ipykernel>=6.29",
            "scikit-learn>=1.4",
        ],
        "bench": ["matplotlib>=3.8"],
    },
    entry_points={"console_scripts": ["dask-coded = dask_coded.__main__:main"]},
)
