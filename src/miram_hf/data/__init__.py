"""datasets builders for the mammography collections, the synthetic phantom and the pretraining mixtures."""
