def preprocess_model_parameters(initialize_model=None, custom_preprocessor=None, device=None):
    return {"model": initialize_model()}
