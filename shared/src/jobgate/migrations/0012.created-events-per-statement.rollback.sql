-- Back to 0011: the `created` event from the row trigger again.
DROP TRIGGER IF EXISTS jobs_created_event ON jobs;
CREATE TRIGGER jobs_created_event AFTER INSERT ON jobs
    FOR EACH ROW EXECUTE FUNCTION jobs_record_event();
DROP FUNCTION IF EXISTS jobs_record_created();
