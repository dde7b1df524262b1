module github.com/strata-db/strata/sdk/go

go 1.24
