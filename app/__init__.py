"""The HARP explorer Streamlit app: pages in ``app/views``, presentation helpers in this package.

Run it with ``harp app --store PATH`` (which runs ``streamlit run app/streamlit_app.py`` with ``HARP_STORE`` set).
Nothing here computes a selection or an effect: the pages call :mod:`harp` and present the result.

The folder is the package ``app`` in a checkout (and in tests and benchmarks); a wheel ships it as the package
``harp_app`` (see setup.py), which :func:`harp.app_files.app_entry` finds for ``harp app``, and the entry script
registers it under the name ``app`` too, so the pages' ``from app.data import ...`` works in both.
"""
