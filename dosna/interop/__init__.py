"""Moving data between dosna and the PyData stack: xarray, dask, zarr and HDF5 files.

Nothing here is imported by ``import dosna`` except what is cheap: xarray,
dask, zarr and h5py are imported when a function needs them.

- :mod:`dosna.interop.copy`: ``dosna.copy(src, dst)``, chunk-streamed copies
  between dosna datasets, zarr arrays and HDF5 file datasets.
- :mod:`dosna.interop.xarray`: the ``engine="dosna"`` xarray backend and
  :func:`~dosna.interop.xarray.to_dosna`.
- :mod:`dosna.interop.dask`: :meth:`dosna.Dataset.to_dask` and a chunk-aligned
  :func:`~dosna.interop.dask.store`.
"""
