"""A model: features and training, its ONNX file and the input every model takes, how it is judged
(`evaluation`, `fairness`) and reported.
"""
