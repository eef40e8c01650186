package mysqlstore

// GetOrderQuery is the statement Get runs, for tests that EXPLAIN it.
const GetOrderQuery = getOrderQuery

// CreatedRange exposes createdRange to the tests.
var CreatedRange = createdRange

// MigrateTo brings the schema up to version (and no further), to fill a database with an older schema.
var MigrateTo = migrateTo
