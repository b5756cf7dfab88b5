"""The HARP explorer Streamlit app: pages in ``app/views``, presentation helpers in this package.

Run it with ``harp app --store PATH`` (which runs ``streamlit run app/streamlit_app.py`` with ``HARP_STORE`` set).
Nothing here computes a selection or an effect: the pages call :mod:`harp` and present the result.
"""
