"""``indextts-webui``: a Gradio page over the same library functions and commands as the CLI.

Five tabs: One step (``indextts voice build`` as one job), Data (prepare and review clips),
Extract & train (background jobs, live curves), Evaluate (summary, plot, promote) and Listen
(streamed speech, A/B). See docs/webui.md.
The command is :mod:`indextts.cli.webui`; Gradio is imported only when the page is built, so
``import indextts.webui`` stays light.
"""
