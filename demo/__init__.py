"""The built-in datasets: laion_subset (Open Clip Art via a local HTTP server and img2dataset) and synthetic shapes.

    demo.build         build_demo(out, ...) / build(...): stage, serve, download; inject caption swaps
    demo.staging       candidates of a source, staged images, the url list, the download check
    demo.source        SourceItem and stage_image (flattened onto white)
    demo.openclipart   Open Clip Art from Debian packages: scan, titles and keywords as captions
    demo.synthetic     drawn shapes with known attributes
    demo.local_server  python -m http.server on 127.0.0.1, stopped reliably
"""

import dataio  # noqa: F401  (sets the OpenMP policy before anything loads torch)
