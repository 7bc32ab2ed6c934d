def custom_preprocessor(model, name):
    return {}
