// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.26;

/// @title ProofOfLearning: an append-only registry of adapter updates.
/// @notice Each record ties a new adapter hash to its parent, to the Merkle root of the
/// preference pairs it was trained on (in order), to the root of the match results those
/// pairs came from, and to the hyperparameters. The trainer is the sender, and only a
/// trainer the admin registered may write (the platform's operator, registered at
/// deployment). Anyone can re-run the training from the exported pairs and compare the
/// adapter hash.
///
/// Merkle trees use keccak256 over sorted pairs: a parent is keccak256(min(a, b) ++ max(a, b)),
/// an unpaired last node moves up unchanged, and leaves are keccak256(keccak256(data)) so that
/// a leaf can never be confused with an inner node. The Rust `chain::merkle` module builds the
/// same trees.
contract ProofOfLearning {
    /// One adapter update.
    struct Record {
        uint64 agentId;
        address trainer;
        uint64 blockNumber;
        bytes32 parentAdapterHash;
        bytes32 newAdapterHash;
        bytes32 pairsRoot;
        bytes32 resultsRoot;
        bytes32 hyperparamsHash;
    }

    Record[] private records;
    mapping(uint64 => uint256[]) private recordsOfAgent;

    /// @notice Who registers trainers (the deployer).
    address public admin;
    /// @notice The accounts allowed to write records.
    mapping(address => bool) public isTrainer;

    event TrainerSet(address indexed trainer, bool allowed);

    event Recorded(
        uint256 indexed id,
        uint64 indexed agentId,
        address indexed trainer,
        bytes32 parentAdapterHash,
        bytes32 newAdapterHash,
        bytes32 pairsRoot,
        bytes32 resultsRoot,
        bytes32 hyperparamsHash
    );

    error EmptyAdapterHash();
    error NotTrainer(address sender);
    error NotRegistryAdmin(address sender);
    error ZeroTrainer();

    constructor(address initialTrainer) {
        if (initialTrainer == address(0)) revert ZeroTrainer();
        admin = msg.sender;
        isTrainer[initialTrainer] = true;
        emit TrainerSet(initialTrainer, true);
    }

    /// @notice Allows (`allowed` true) or stops `trainer` writing records. Only the admin
    /// may do this; records already written stay.
    function setTrainer(address trainer, bool allowed) external {
        if (msg.sender != admin) revert NotRegistryAdmin(msg.sender);
        if (trainer == address(0)) revert ZeroTrainer();
        isTrainer[trainer] = allowed;
        emit TrainerSet(trainer, allowed);
    }
    error UnknownRecord(uint256 id);
    error AgentIndexOutOfRange(uint64 agentId, uint256 index);

    /// @notice Appends a record with the sender as trainer and returns its id.
    function record(
        uint64 agentId,
        bytes32 parentAdapterHash,
        bytes32 newAdapterHash,
        bytes32 pairsRoot,
        bytes32 resultsRoot,
        bytes32 hyperparamsHash
    ) external returns (uint256 id) {
        if (!isTrainer[msg.sender]) revert NotTrainer(msg.sender);
        if (newAdapterHash == bytes32(0)) revert EmptyAdapterHash();
        id = records.length;
        records.push(
            Record({
                agentId: agentId,
                trainer: msg.sender,
                blockNumber: uint64(block.number),
                parentAdapterHash: parentAdapterHash,
                newAdapterHash: newAdapterHash,
                pairsRoot: pairsRoot,
                resultsRoot: resultsRoot,
                hyperparamsHash: hyperparamsHash
            })
        );
        recordsOfAgent[agentId].push(id);
        emit Recorded(
            id, agentId, msg.sender, parentAdapterHash, newAdapterHash, pairsRoot, resultsRoot, hyperparamsHash
        );
    }

    /// @notice How many records exist.
    function recordCount() external view returns (uint256) {
        return records.length;
    }

    /// @notice The record with id `id`.
    function getRecord(uint256 id) external view returns (Record memory) {
        if (id >= records.length) revert UnknownRecord(id);
        return records[id];
    }

    /// @notice How many records exist for `agentId`.
    function agentRecordCount(uint64 agentId) external view returns (uint256) {
        return recordsOfAgent[agentId].length;
    }

    /// @notice The id of the `index`-th record of `agentId`, oldest first.
    function agentRecordAt(uint64 agentId, uint256 index) external view returns (uint256) {
        uint256[] storage ids = recordsOfAgent[agentId];
        if (index >= ids.length) revert AgentIndexOutOfRange(agentId, index);
        return ids[index];
    }

    /// @notice True when `proof` links `leaf` to `root` (sorted-pair keccak256 tree).
    function verifyProof(bytes32[] calldata proof, bytes32 root, bytes32 leaf) public pure returns (bool) {
        bytes32 node = leaf;
        for (uint256 i; i < proof.length; ++i) {
            bytes32 sibling = proof[i];
            node = node < sibling
                ? keccak256(abi.encodePacked(node, sibling))
                : keccak256(abi.encodePacked(sibling, node));
        }
        return node == root;
    }

    /// @notice True when `leaf` is in the pairs root (`inResults` false) or the results
    /// root (`inResults` true) of record `id`.
    function verifyInRecord(uint256 id, bool inResults, bytes32[] calldata proof, bytes32 leaf)
        external
        view
        returns (bool)
    {
        if (id >= records.length) revert UnknownRecord(id);
        Record storage r = records[id];
        return verifyProof(proof, inResults ? r.resultsRoot : r.pairsRoot, leaf);
    }
}
