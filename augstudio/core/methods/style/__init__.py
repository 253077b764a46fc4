"""Texture synthesis and style transfer (Qt-free).

* ``features``  VGG19 (torchvision weights API, a user file, or seeded random) and the weight-free random
                multi-scale extractor of Ustyuzhaninov et al. (ICLR 2017)
* ``losses``    Gram matrix, E_l, L_style, L_content, L exactly as Gatys et al. define them, plus the fused form
* ``optimize``  texture synthesis and Gatys style transfer as jobs (L-BFGS or Adam, coarse-to-fine pyramid)
* ``adain``     AdaIN in the pytorch-AdaIN layout: load released files, train a decoder as a job
* ``fast``      Johnson et al. fast style networks: train as a job, save, apply
* ``randomize`` weight-free style randomisation: RandConv, AdaIN with random statistics
* ``dispatch``  the one entry point (``style_job``) that ``augstudio style`` and the GUI's Style panel run;
                its fast / randconv / stats are the ``stylize`` recipe op's (``core/ops/style.py``)
"""
