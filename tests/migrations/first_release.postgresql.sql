-- The metrics store as the first release (commit ca27896, plugins/mlinfra/store.py) created it on postgresql,
-- generated from that commit's table definitions with SQLAlchemy's CreateTable/CreateIndex.
-- Fixture of tests/migrations: never edit; a later schema is a new migration.

CREATE TABLE mlinfra_series (
	id SERIAL NOT NULL,
	fingerprint VARCHAR(40) NOT NULL,
	name VARCHAR(255) NOT NULL,
	labels TEXT NOT NULL,
	PRIMARY KEY (id),
	UNIQUE (fingerprint)
);

CREATE INDEX ix_mlinfra_series_name ON mlinfra_series (name);

CREATE TABLE mlinfra_staging (
	run_id VARCHAR(250) NOT NULL,
	collector VARCHAR(64) NOT NULL,
	ts BIGINT NOT NULL,
	payload TEXT NOT NULL,
	created_at TIMESTAMP WITH TIME ZONE NOT NULL,
	PRIMARY KEY (run_id, collector)
);

CREATE TABLE mlinfra_sweeps (
	ts BIGINT NOT NULL,
	run_id VARCHAR(250),
	written_at TIMESTAMP WITH TIME ZONE NOT NULL,
	samples INTEGER NOT NULL,
	summary TEXT,
	PRIMARY KEY (ts)
);

CREATE TABLE mlinfra_samples (
	series_id INTEGER NOT NULL,
	ts BIGINT NOT NULL,
	value DOUBLE PRECISION,
	PRIMARY KEY (series_id, ts),
	FOREIGN KEY(series_id) REFERENCES mlinfra_series (id) ON DELETE CASCADE
);

CREATE INDEX ix_mlinfra_samples_ts ON mlinfra_samples (ts);
