-- How far a replay building this namespace has got, per topic partition, written in the
-- same transaction as the rows it covers: an interrupted replay resumes exactly here.
-- (Empty in a namespace fed only by the live projector.)
CREATE TABLE replay_progress (
    topic       text    NOT NULL,
    partition   integer NOT NULL,
    next_offset bigint  NOT NULL,
    PRIMARY KEY (topic, partition)
);
