"""The Gradio front end: one module per tab, a shared parameter panel, and pure glue (ui.values).

`ui.build.build_ui` assembles the Blocks; app.py is the only caller. ui.values imports neither gradio nor
torch, so its glue can be unit-tested fast.
"""
