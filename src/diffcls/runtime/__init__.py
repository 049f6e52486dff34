"""The ground floor: atomic files and logs (``io``), checkpoint folders (``checkpoint``), devices and seeding
(``device``), torchrun (``distributed``). It imports nothing of diffcls but :mod:`diffcls.errors`."""
