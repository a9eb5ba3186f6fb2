"""Files bayescale writes and reads back: atomic writes, and the fit file.

* :mod:`bayescale.storage.atomic`: a file appears complete at its final path
  or not at all (a uniquely named temporary file in the same folder, created
  exclusively so that no symlink is followed, then renamed over the target);
  temporary files a killed process left behind are removed by the next write
  to that folder.
* :mod:`bayescale.storage.fitfile`: the NetCDF (HDF5) fit file, written with
  a SHA-256 checksum of its bytes appended and read back only after the
  checksum, the HDF5 features used and every stored field have been checked:
  anything wrong is one :class:`~bayescale.errors.FitFileError`.
"""

from .atomic import write_atomically
from .fitfile import read_fit_file, write_fit_file

__all__ = ["read_fit_file", "write_atomically", "write_fit_file"]
