"""What an image must contain for a workload: Debian packages, the binaries taken from them,
and extra files or directories (absolute host paths). Libraries are resolved with ldd."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ImageRecipe:
    packages: tuple[str, ...]
    binaries: tuple[str, ...]
    files: tuple[str, ...] = ()
    directories: tuple[str, ...] = ()  # created empty in the image (writable scratch)
    extra: dict = field(default_factory=dict, hash=False, compare=False)

    def merged(self, other: "ImageRecipe") -> "ImageRecipe":
        return ImageRecipe(
            tuple(dict.fromkeys(self.packages + other.packages)),
            tuple(dict.fromkeys(self.binaries + other.binaries)),
            tuple(dict.fromkeys(self.files + other.files)),
            tuple(dict.fromkeys(self.directories + other.directories)),
        )
