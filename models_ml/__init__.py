"""The AI: feature sets, the in-silico patient simulator, the dose-response model, the registry,
private training, explanations (SHAP), fairness audits and drift monitoring."""
