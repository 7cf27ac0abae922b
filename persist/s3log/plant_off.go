//go:build !weaseldb_plant_recover_deletes

package s3log

// plantedRecoverDeletes is false in every real build; see plant_on.go.
const plantedRecoverDeletes = false
