"""Offline WordNet through nltk: nltk's own data if present, else Debian's wordnet-base files.

nltk expects WordNet under ``corpora/wordnet`` on ``nltk.data.path`` and would download it;
this machine class has no internet, so Debian's copy (``/usr/share/wordnet``) is copied into a
cache folder that is appended to ``nltk.data.path``. Debian leaves out the ``lexnames`` file
nltk reads first; it is a fixed table (``man 5 lexnames``) written here as data.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from pathlib import Path

import nltk
from nltk.corpus.reader import CorpusReader, WordNetCorpusReader
from nltk.corpus.util import LazyCorpusLoader

from dataio.errors import DataError

DEBIAN_WORDNET_DIR = Path("/usr/share/wordnet")

# nltk cannot open WordNet without these; the others it only needs for rarer lookups.
REQUIRED_FILES = tuple(
    f"{kind}.{pos}" for kind in ("index", "data") for pos in ("noun", "verb", "adj", "adv")
) + tuple(f"{pos}.exc" for pos in ("noun", "verb", "adj", "adv"))
OPTIONAL_FILES = ("index.sense", "cntlist.rev")

# Lexicographer file number, name and syntactic category (1 noun, 2 verb, 3 adj, 4 adv),
# as listed in lexnames(5WN) of WordNet 3.0 (checked against Debian's lexnames.5WN.gz).
LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute "
    "noun.body noun.cognition noun.communication noun.event noun.feeling noun.food "
    "noun.group noun.location noun.motive noun.object noun.person noun.phenomenon "
    "noun.plant noun.possession noun.process noun.quantity noun.relation noun.shape "
    "noun.state noun.substance noun.time verb.body verb.change verb.cognition "
    "verb.communication verb.competition verb.consumption verb.contact verb.creation "
    "verb.emotion verb.motion verb.perception verb.possession verb.social verb.stative "
    "verb.weather adj.ppl"
).split()
_CATEGORY_NUMBERS = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}

MISSING_WORDNET = (
    "WordNet not found: install it with `apt-get install -y wordnet-base wordnet-sense-index` "
    "or, with internet, `python -c \"import nltk; nltk.download('wordnet')\"`"
)


def lexnames_text() -> str:
    """The ``lexnames`` file WordNet 3.0 ships, one ``NN<TAB>name<TAB>category`` line each.

    >>> lexnames_text().splitlines()[5]
    '05\\tnoun.animal\\t1'
    """
    lines = (
        f"{number:02d}\t{name}\t{_CATEGORY_NUMBERS[name.split('.')[0]]}"
        for number, name in enumerate(LEXNAMES)
    )
    return "\n".join(lines) + "\n"


def default_cache_root() -> Path:
    """The nltk data folder this toolkit fills: ``$XDG_CACHE_HOME/clipmem/nltk_data``.

    >>> default_cache_root().name
    'nltk_data'
    """
    cache_home = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache_home) / "clipmem" / "nltk_data"


def install_debian_wordnet(debian_dir: str | Path, nltk_data_root: str | Path) -> Path:
    """Copy Debian's WordNet files plus ``lexnames`` to ``nltk_data_root/corpora/wordnet``.

    Copies (never links, so removing the Debian package later cannot break the cache) into a
    temporary folder renamed into place, so a reader never sees half a copy. A complete copy
    already there is reused. Raises DataError when ``debian_dir`` lacks a required file.

    >>> import tempfile
    >>> root = install_debian_wordnet("/usr/share/wordnet", tempfile.mkdtemp())
    >>> (root / "lexnames").is_file(), root.name
    (True, 'wordnet')
    """
    debian_dir = Path(debian_dir)
    target = Path(nltk_data_root) / "corpora" / "wordnet"
    if _is_complete(target):
        return target
    missing = [name for name in REQUIRED_FILES if not (debian_dir / name).is_file()]
    if missing:
        raise DataError(f"{debian_dir} lacks {', '.join(missing)}. {MISSING_WORDNET}")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".wordnet-", dir=target.parent))
    staging.chmod(0o755)  # mkdtemp's 0700 would hide a shared cache from other users
    try:
        for name in REQUIRED_FILES + OPTIONAL_FILES:
            if (debian_dir / name).is_file():
                shutil.copyfile(debian_dir / name, staging / name)
        (staging / "lexnames").write_text(lexnames_text(), encoding="utf-8")
        _replace_dir(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return target


def _is_complete(wordnet_dir: Path) -> bool:
    return all((wordnet_dir / name).is_file() for name in REQUIRED_FILES + ("lexnames",))


def _replace_dir(staging: Path, target: Path) -> None:
    """Rename ``staging`` to ``target``; an incomplete leftover at ``target`` is moved aside."""
    if target.exists() and not _is_complete(target):
        stale = Path(tempfile.mkdtemp(prefix=".wordnet-stale-", dir=target.parent))
        os.replace(target, stale / "wordnet")
        shutil.rmtree(stale)
    try:
        os.rename(staging, target)
    except OSError:
        # Another process finished its copy first; theirs is as good as ours.
        if not _is_complete(target):
            raise


def _reader_at(root: Path) -> WordNetCorpusReader:
    # The same multilingual loader nltk attaches; it stays lazy unless a non-English lookup asks.
    omw = LazyCorpusLoader("omw-2.0", CorpusReader, r".*/wn-data-.*\.tab", encoding="utf8")
    return WordNetCorpusReader(nltk.data.FileSystemPathPointer(str(root)), omw)


def _nltk_has_wordnet() -> bool:
    try:
        nltk.data.find("corpora/wordnet")
    except LookupError:
        return False
    return True


@functools.lru_cache(maxsize=None)
def load_wordnet(
    debian_dir: str | Path = DEBIAN_WORDNET_DIR, cache_root: str | Path | None = None
) -> WordNetCorpusReader:
    """The nltk WordNet reader, found offline; cached per arguments.

    Uses nltk's own data when ``nltk.data.path`` has it, else copies Debian's files from
    ``debian_dir`` into ``cache_root`` (default :func:`default_cache_root`), appends that to
    ``nltk.data.path`` and reads them there. Raises DataError naming both fixes when neither
    exists.

    >>> wn = load_wordnet()
    >>> wn.synsets("dog")[0].name()
    'dog.n.01'
    """
    if _nltk_has_wordnet():
        from nltk.corpus import wordnet

        wordnet.ensure_loaded()
        return wordnet
    debian_dir = Path(debian_dir)
    if not debian_dir.is_dir():
        raise DataError(MISSING_WORDNET)
    nltk_data_root = Path(cache_root) if cache_root is not None else default_cache_root()
    wordnet_dir = install_debian_wordnet(debian_dir, nltk_data_root)
    if str(nltk_data_root) not in nltk.data.path:
        nltk.data.path.append(str(nltk_data_root))
    return _reader_at(wordnet_dir)
