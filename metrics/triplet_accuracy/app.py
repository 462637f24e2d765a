import evaluate
from evaluate.utils import launch_gradio_widget

module = evaluate.load("triplet_accuracy")
launch_gradio_widget(module)
