"""The built-in catalog of public EM datasets with ground truth, as plain data.

Each entry of :data:`ENTRIES` is a dict with the fields of :class:`~workbench.datasets.registry.DatasetInfo`;
``layouts`` hold dicts of :class:`~workbench.datasets.registry.Layout` (``files``: dicts of ``RemoteFile``,
``raw`` and each label's ``source``: dicts of ``Source``, ``labels``: dicts of ``LabelSource``). A label's
``transform`` is described, not coded: ``{"value_map": {file value: stored value}, "what": ...}``. The
registry (:mod:`workbench.datasets.registry`) validates the entries into ``DatasetInfo`` when it is first
read; this module imports nothing of the workbench.

Checksums: a ``sha256`` is given only where one is known for certain for that exact file (the value
pinned by a widely used loader that downloads the same URL). Hosts that publish no checksum, or serve
files that can change (a repository archive), have no ``sha256``: fetching then verifies what it
can and prints the SHA-256 it saw so a user can pin it.
"""

from __future__ import annotations

# Pinned by torch-em's loaders for the same URLs (torch_em/data/datasets/electron_microscopy).
_EMBL = "https://oc.embl.de/index.php/s"


# --------------------------------------------------------------------------------------------- ISBI 2012
def _isbi_labels(source: dict) -> list[dict]:
    return [
        dict(name="original", source=source, kind="original",
             note="as in the file: 255 = cell interior, 0 = membrane (not the workbench's 0 = unlabelled)"),
        dict(
            name="semantic",
            source=source,
            kind="semantic",
            classes={1: "membrane", 2: "cell interior"},
            transform={"value_map": {0: 1, 255: 2}, "what": "ISBI 2012 labels"},
            note="1 = membrane (file value 0), 2 = cell interior (file value 255); derived from the binary labels",
        ),
    ]


ISBI2012 = dict(
    name="isbi2012",
    title="ISBI 2012 EM segmentation challenge (Drosophila VNC)",
    description=(
        "Thirty serial-section TEM images of the ventral nerve cord of a first-instar Drosophila larva, "
        "each 512 x 512 pixels, with every pixel labelled as membrane or cell interior. It is the dataset "
        "of the first neuron-segmentation challenge and the one the 2D U-Net was introduced on. Sections "
        "are 50 nm thick while pixels are 4 nm, so it is strongly anisotropic: treat it as 2D. The labels "
        "are binary (255 = interior, 0 = membrane); the workbench also stores them as classes "
        "(1 = membrane, 2 = interior)."
    ),
    modality="ssTEM (serial-section transmission EM)",
    organism="Drosophila melanogaster (first-instar larva)",
    tissue="ventral nerve cord",
    voxel_size=(50.0, 4.0, 4.0),
    shape=(30, 512, 512),
    license="not stated by the host; free for research with citation (challenge terms)",
    citation=(
        "Arganda-Carreras I. et al. (2015) Crowdsourcing the creation of image segmentation algorithms "
        "for connectomics. Frontiers in Neuroanatomy 9:142. Data: Cardona A. et al. (2010) PLoS Biology "
        "8(10):e1000502."
    ),
    doi="10.3389/fnana.2015.00142",
    homepage="https://imagej.net/events/isbi-2012-segmentation-challenge",
    tasks=("membranes",),
    layouts=[
        dict(
            name="tiff",
            files=[dict(name="train-volume.tif", size_mb=7.3), dict(name="train-labels.tif", size_mb=0.3)],
            raw=dict(paths=["train-volume.tif"]),
            labels=_isbi_labels(dict(paths=["train-labels.tif"])),
            note="the official training files; the challenge site hands them out after registration",
        ),
        dict(
            name="hdf5",
            files=[
                dict(
                    name="isbi.h5",
                    url=f"{_EMBL}/h0TkwqxU0PJDdMd/download",
                    sha256="0e10fe909a1243084d91773470856993b7d40126a12e85f0f1345a7a9e512f29",
                ),
            ],
            raw=dict(paths=["isbi.h5"], key="raw"),
            labels=_isbi_labels(dict(paths=["isbi.h5"], key="labels/membranes")),
            note="the training volume repackaged as HDF5 (keys raw, labels/membranes) on EMBL's server; the "
            "label values are checked at fetch (0 and 255 expected, as in the TIFF)",
        ),
    ],
)


# ---------------------------------------------------------------------------------------------- SNEMI3D
def _neurite_ids(source: dict) -> list[dict]:
    return [dict(name="instances", source=source, note="one id per neurite")]


SNEMI3D = dict(
    name="snemi3d",
    title="SNEMI3D (mouse neocortex, Kasthuri et al.)",
    description=(
        "A 100-section block of mouse somatosensory cortex imaged with automated tape-collecting "
        "serial-section SEM (ATUM), 1024 x 1024 pixels per section, with every neurite given its own id. "
        "It is the benchmark of the 3D neurite segmentation challenge at ISBI 2013, scored with the "
        "adapted Rand error; affinity prediction plus watershed/agglomeration is the classic approach."
    ),
    modality="ATUM-SEM (serial-section SEM)",
    organism="Mus musculus",
    tissue="somatosensory neocortex",
    voxel_size=(29.0, 6.0, 6.0),
    shape=(100, 1024, 1024),
    license="not stated by the host; free for research with citation (challenge terms)",
    citation="Kasthuri N. et al. (2015) Saturated reconstruction of a volume of neocortex. Cell 162(3):648-661.",
    doi="10.1016/j.cell.2015.06.054",
    homepage="https://snemi3d.grand-challenge.org/",
    tasks=("neurons",),
    layouts=[
        dict(
            name="tiff",
            files=[dict(name="train-input.tif"), dict(name="train-labels.tif")],
            raw=dict(paths=["train-input.tif"]),
            labels=_neurite_ids(dict(paths=["train-labels.tif"])),
            note="the official training TIFF stacks (the challenge site hands them out after registration)",
        ),
        dict(
            name="zip",
            files=[dict(name="snemi.zip", url="http://rhoana.rc.fas.harvard.edu/dataset/snemi.zip", unpack=True)],
            raw=dict(paths=["image/train-input.tif"]),
            labels=_neurite_ids(dict(paths=["seg/train-labels.tif"])),
            note="the Harvard RC copy: TIFF stacks in a zip (image/train-input.tif, seg/train-labels.tif)",
        ),
        dict(
            name="hdf5",
            files=[
                dict(
                    name="snemi_train.h5",
                    url=f"{_EMBL}/43iMotlXPyAB39z/download",
                    sha256="5b130a24d9eb23d972fede0f1a403bc05f6808b361cfa22eff23b930b12f0615",
                ),
            ],
            raw=dict(paths=["snemi_train.h5"], key="volumes/raw"),
            labels=_neurite_ids(dict(paths=["snemi_train.h5"], key="volumes/labels/neuron_ids")),
            note="the training volume repackaged as HDF5 on EMBL's server",
        ),
    ],
)


# ------------------------------------------------------------------------------------------------ CREMI
_CREMI = {
    "a": "4c563d1b78acb2bcfb3ea958b6fe1533422f7f4a19f3e05b600bfa11430b510d",
    "b": "887e85521e00deead18c94a21ad71f278d88a5214c7edeed943130a1f4bb48b8",
    "c": "2874496f224d222ebc29d0e4753e8c458093e1d37bc53acd1b69b19ed1ae7052",
}
_CREMI_NOTES = {
    "a": "the most regular of the three",
    "b": "with more varied neurite shapes and some imaging artifacts",
    "c": "the hardest of the three, with large misalignments and artifacts",
}


def _cremi(sample: str) -> dict:
    fname = f"sample_{sample.upper()}_20160501.hdf"
    return dict(
        name=f"cremi-{sample}",
        title=f"CREMI sample {sample.upper()} (adult Drosophila brain)",
        description=(
            f"Training sample {sample.upper()} of the MICCAI 2016 CREMI challenge, {_CREMI_NOTES[sample]}: "
            "125 sections of 1250 x 1250 pixels from the adult fly brain (from the FAFB volume), with "
            "neuron ids and synaptic clefts. One HDF5 file holds the raw data (volumes/raw) and labels "
            "(volumes/labels/neuron_ids); the file records its resolution (40, 4, 4) nm. Scored with the "
            "CREMI score (VOI split/merge and adapted Rand)."
        ),
        modality="ssTEM (serial-section transmission EM)",
        organism="Drosophila melanogaster (adult)",
        tissue="brain (from the FAFB volume)",
        voxel_size=(40.0, 4.0, 4.0),
        shape=(125, 1250, 1250),
        license="not stated by the host; free for research with citation (challenge terms)",
        citation=(
            "CREMI: MICCAI 2016 Challenge on Circuit Reconstruction from Electron Microscopy Images, "
            "https://cremi.org. Data from Zheng Z. et al. (2018) A complete electron microscopy volume of "
            "the brain of adult Drosophila melanogaster. Cell 174(3):730-743."
        ),
        doi="10.1016/j.cell.2018.06.019",
        homepage="https://cremi.org/data/",
        tasks=("neurons",),
        layouts=[
            dict(
                name="hdf5",
                files=[
                    dict(name=fname, url=f"https://cremi.org/static/data/{fname}", sha256=_CREMI[sample], size_mb=180)
                ],
                raw=dict(paths=[fname], key="volumes/raw"),
                labels=[
                    dict(
                        name="instances",
                        source=dict(paths=[fname], key="volumes/labels/neuron_ids"),
                        note="neuron ids as in the file (uint64)",
                    ),
                ],
                note="the original (unaligned, unpadded) training file; cremi.org's TLS certificate has expired "
                "at times: download it with a browser into the mirror if the fetch fails",
            ),
        ],
    )


# ----------------------------------------------------------------------------------------------- Lucchi
_EPFL = "https://documents.epfl.ch/groups/c/cv/cvlab-unit/www/data/%20ElectronMicroscopy_Hippocampus"

LUCCHI = dict(
    name="lucchi",
    title="EPFL hippocampus mitochondria (Lucchi et al.)",
    description=(
        "A FIB-SEM block of the CA1 hippocampus of an adult mouse at about 5 nm isotropic resolution, "
        "with every mitochondrion painted in. The training stack (165 x 768 x 1024) is stored here; a "
        "test stack of the same size is on the same page. Because the voxels are isotropic, 3D networks "
        "and augmentation in all three planes work well; it is scored with foreground IoU (Jaccard). "
        "Labels: 1 = background, 2 = mitochondrion."
    ),
    modality="FIB-SEM",
    organism="Mus musculus",
    tissue="hippocampus, CA1",
    voxel_size=(5.0, 5.0, 5.0),
    shape=(165, 768, 1024),
    license="not stated by the host; free for research with citation (EPFL CVLab data page)",
    citation=(
        "Lucchi A., Smith K., Achanta R., Knott G., Fua P. (2012) Supervoxel-based segmentation of "
        "mitochondria in EM image stacks with learned shape features. IEEE Transactions on Medical "
        "Imaging 31(2):474-486."
    ),
    doi="10.1109/TMI.2011.2171705",
    homepage="https://www.epfl.ch/labs/cvlab/data/data-em/",
    tasks=("mitochondria",),
    layouts=[
        dict(
            name="tiff",
            files=[
                dict(name="training.tif", url=f"{_EPFL}/training.tif"),
                dict(name="training_groundtruth.tif", url=f"{_EPFL}/training_groundtruth.tif"),
            ],
            raw=dict(paths=["training.tif"]),
            labels=[
                dict(
                    name="semantic",
                    source=dict(paths=["training_groundtruth.tif"]),
                    kind="semantic",
                    classes={1: "background", 2: "mitochondrion"},
                    transform={"value_map": {0: 1, 255: 2}, "what": "Lucchi labels"},
                    note="1 = background (file value 0), 2 = mitochondrion (file value 255)",
                ),
            ],
            note="multi-page TIFF stacks from EPFL CVLab",
        ),
    ],
)


# ----------------------------------------------------------------------------------------------- MitoEM
_MITOEM = {
    "rat": dict(
        code="R",
        raw_url="https://huggingface.co/datasets/pytc/EM30/resolve/main/EM30-R-im.zip",
        raw_sha="6a2cac68adde5d01984542d3ee1d7753d1fa3e6eb2a042ce15ce297c95885bbe",
        lab_url="https://huggingface.co/datasets/pytc/MitoEM/resolve/main/EM30-R-mito-train-val-v2.zip",
        lab_sha="c56380ac575428a818bd293ca3509d1249999846c3702ccbf11d308acdd2ae86",
        organism="Rattus norvegicus (adult)",
        tissue="cortex, layer II/III (MitoEM-R)",
    ),
    "human": dict(
        code="H",
        raw_url="https://www.dropbox.com/s/z41qtu4y735j95e/EM30-H-im.zip?dl=1",
        raw_sha="98fe259f36a7d8d43f99981b7a0ef8cdeba2ce2615ff91595f428ae57207a041",
        lab_url="https://www.dropbox.com/s/dhf89bc14kemw4e/EM30-H-mito-train-val-v2.zip?dl=1",
        lab_sha="0e8ed292cfcd0c58701d9f4299244a1b66d6aeb506c85754c34f98a4eda0ef1b",
        organism="Homo sapiens (adult)",
        tissue="cortex, layer II (MitoEM-H)",
    ),
}


def _mitoem(species: str) -> dict:
    m = _MITOEM[species]
    code = m["code"]
    return dict(
        name=f"mitoem-{species}",
        title=f"MitoEM-{code} ({species} cortex mitochondria)",
        description=(
            f"One of the two large MitoEM volumes ({species} cortex, multi-beam SEM at 30 x 8 x 8 nm), with "
            "every mitochondrion as its own instance. The full volume is 1000 x 4096 x 4096; the workbench "
            "stores the 500 labelled slices (400 training + 100 validation), about 8 GB of raw data: plan "
            "disk space and time. It is the benchmark of the ISBI 2021 MitoEM challenge, scored with AP-75."
        ),
        modality="multi-beam SEM (serial sections)",
        organism=m["organism"],
        tissue=m["tissue"],
        voxel_size=(30.0, 8.0, 8.0),
        shape=(500, 4096, 4096),
        license="not stated in the download; free for research with citation (MitoEM challenge terms)",
        citation=(
            "Wei D. et al. (2020) MitoEM dataset: large-scale 3D mitochondria instance segmentation from EM "
            "images. MICCAI 2020, LNCS 12265:66-76."
        ),
        doi="10.1007/978-3-030-59722-1_7",
        homepage="https://mitoem.grand-challenge.org/",
        tasks=("mitochondria",),
        layouts=[
            dict(
                name="zip",
                files=[
                    dict(name=f"EM30-{code}-im.zip", url=m["raw_url"], sha256=m["raw_sha"], unpack=True),
                    dict(name=f"EM30-{code}-mito-train-val-v2.zip", url=m["lab_url"], sha256=m["lab_sha"],
                         unpack=True),
                ],
                raw=dict(paths=["im"], z_range=(0, 500)),
                labels=[
                    dict(
                        name="instances",
                        source=dict(paths=["mito-train-v2", "mito-val-v2"]),
                        note="one id per mitochondrion; slices 0-399 training, 400-499 validation",
                    ),
                ],
                note="PNG slices im/im0000.png ... and TIFF label slices mito-train-v2/, mito-val-v2/",
            ),
        ],
    )


# ---------------------------------------------------------------------------------------------- UroCell
_UROCELL_SUB = "fib1-0-0-0"

UROCELL = dict(
    name="urocell",
    title="UroCell (mouse bladder urothelium, FIB-SEM)",
    description=(
        "FIB-SEM sub-volumes (256 x 256 x 256) of umbrella cells of the mouse urinary bladder epithelium, "
        "binned to an almost isotropic 16 x 16 x 15 nm. Mitochondria, endolysosomes and Golgi are "
        f"annotated; the workbench stores sub-volume {_UROCELL_SUB} with its mitochondrion instances. A small, "
        "isotropic dataset of a non-neural tissue: a good contrast to the brain datasets."
    ),
    modality="FIB-SEM",
    organism="Mus musculus",
    tissue="urinary bladder urothelium (umbrella cells)",
    voxel_size=(15.0, 16.0, 16.0),
    shape=(256, 256, 256),
    license="CC BY-NC-SA 4.0",
    citation=(
        "Zerovnik Mekuc M. et al. (2020) Automatic segmentation of mitochondria and endolysosomes in "
        "volumetric electron microscopy data. Computers in Biology and Medicine 119:103693."
    ),
    doi="10.1016/j.compbiomed.2020.103693",
    homepage="https://github.com/MancaZerovnikMekuc/UroCell",
    tasks=("mitochondria",),
    layouts=[
        dict(
            name="zip",
            files=[
                dict(
                    name="UroCell-master.zip",
                    url="https://github.com/MancaZerovnikMekuc/UroCell/archive/refs/heads/master.zip",
                    unpack=True,
                ),
            ],
            raw=dict(paths=[f"data/{_UROCELL_SUB}.nii.gz"], layout="xyz"),
            labels=[
                dict(
                    name="instances",
                    source=dict(paths=[f"mito/instance/{_UROCELL_SUB}.nii.gz"], layout="xyz"),
                    note="one id per mitochondrion",
                ),
            ],
            note="the repository archive (changes with the repository, so no fixed checksum); NIfTI "
            "volumes are stored x, y, z and transposed to z, y, x",
        ),
    ],
)


#: The built-in entries, in catalog order.
ENTRIES: tuple[dict, ...] = (
    ISBI2012,
    SNEMI3D,
    _cremi("a"),
    _cremi("b"),
    _cremi("c"),
    LUCCHI,
    _mitoem("rat"),
    _mitoem("human"),
    UROCELL,
)
