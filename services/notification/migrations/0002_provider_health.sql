-- The console's provider health counts recent attempts by when they started.
CREATE INDEX delivery_attempts_started ON delivery_attempts (started_at);
