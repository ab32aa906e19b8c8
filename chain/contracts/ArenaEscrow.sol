// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.26;

/// @title ArenaEscrow: the entry-fee escrow rules of RLFC Arena (version 2), for any
/// fee asset.
/// @notice Users hold a balance of the fee asset inside the contract. The operator locks
/// entry fees from those balances into a match's escrow, then either settles the match
/// (payouts credited to balances, the rake to the treasury) or refunds every locked fee.
/// Payouts are credited, never pushed, so a settlement cannot be blocked by a payee;
/// each owner pulls their own balance out with `withdraw`. How the asset comes in
/// (`deposit`) and goes out (`_payOut`) is up to the concrete contract: `Arena` holds
/// ETH, `TokenArena` one ERC-20 token. Amounts are in the asset's smallest unit (wei
/// for ETH).
///
/// What protects players from the operator:
/// - a settlement pays only the entrants of that match, listed in the order their fees
///   were locked, and pays them the whole pot minus the rake their Space declared (up
///   to one unit of rounding dust per entrant may go to the treasury with the rake);
/// - the rake of each Space is declared by the admin, not the operator, and a match
///   keeps the rake its Space had when its first fee was locked;
/// - the treasury is set by the admin;
/// - an entrant can reclaim every fee of a match that was neither settled nor refunded
///   `reclaimAfter` seconds after its first fee was locked;
/// - the admin can replace the operator and pause new entries.
abstract contract ArenaEscrow {
    /// The version of these rules. The platform refuses a contract of another version.
    uint256 public constant VERSION = 2;
    /// Basis points in a whole.
    uint256 private constant BPS = 10_000;

    /// Life cycle of a match escrow. `None` is the zero value of an unused match id.
    enum MatchStatus {
        None,
        Open,
        Settled,
        Refunded
    }

    /// One locked entry fee. Packed into a single storage slot.
    struct Entry {
        address user;
        uint96 fee;
    }

    /// A match's escrow, in one storage slot. `held` is what it still holds (zero once
    /// closed); `openedAt` is when its first fee was locked; `rakeBps` is the rake of its
    /// Space at that moment.
    struct Escrow {
        uint128 held;
        uint64 openedAt;
        uint32 spaceId;
        uint16 rakeBps;
        MatchStatus status;
    }

    /// A Space's terms as the admin declared them.
    struct SpaceTerms {
        bool declared;
        uint16 rakeBps;
    }

    /// The account that may change the operator, the treasury, the admin, the Spaces'
    /// rakes, and pause entries.
    address public admin;
    /// The account that may lock, settle, refund and anchor results.
    address public operator;
    /// Where rakes go.
    address public treasury;
    /// While true, no fee can be locked.
    bool public paused;
    /// Seconds after a match's first lock from which its entrants may reclaim the fees.
    uint64 public immutable reclaimAfter;
    /// Each account's withdrawable balance, in wei.
    mapping(address => uint256) public balanceOf;
    /// Each match's escrow.
    mapping(uint256 => Escrow) public escrowOf;
    /// The result root stored by a match's settlement or anchoring.
    mapping(uint256 => bytes32) public resultRootOf;
    /// Each Space's declared terms.
    mapping(uint256 => SpaceTerms) public spaceTerms;
    mapping(uint256 => Entry[]) private entries;

    event Deposited(address indexed user, uint256 amount, uint256 balance);
    event Withdrawn(address indexed user, uint256 amount, uint256 balance);
    event FeeLocked(uint256 indexed matchId, address indexed user, uint256 fee, uint256 held);
    event MatchSettled(
        uint256 indexed matchId, bytes32 resultRoot, uint256 paidOut, address indexed treasury, uint256 toTreasury
    );
    event MatchRefunded(uint256 indexed matchId, uint256 refunded, uint256 entries);
    event MatchReclaimed(uint256 indexed matchId, address indexed by);
    event ResultAnchored(uint256 indexed matchId, bytes32 resultRoot);
    event SpaceDeclared(uint256 indexed spaceId, uint256 rakeBps);
    event OperatorChanged(address indexed previous, address indexed current);
    event TreasuryChanged(address indexed previous, address indexed current);
    event AdminChanged(address indexed previous, address indexed current);
    event PausedSet(bool paused);

    error NotAdmin(address caller);
    error NotOperator(address caller);
    error ZeroAmount();
    error ZeroAddress();
    error InsufficientBalance(address account, uint256 available, uint256 required);
    error FeeTooLarge(uint256 fee);
    error MatchNotOpen(uint256 matchId, MatchStatus status);
    error MatchClosed(uint256 matchId, MatchStatus status);
    error MatchExists(uint256 matchId, MatchStatus status);
    error LengthMismatch(uint256 payees, uint256 amounts);
    error EntrantCountMismatch(uint256 matchId, uint256 entrants, uint256 payees);
    error NotEntrant(uint256 matchId, address account);
    error PayoutExceedsPrize(uint256 matchId, uint256 prize);
    error PayoutBelowPrize(uint256 matchId, uint256 prize, uint256 paid);
    error SpaceNotDeclared(uint256 spaceId);
    error SpaceIdTooLarge(uint256 spaceId);
    error RakeTooLarge(uint256 rakeBps);
    error SpaceMismatch(uint256 matchId, uint256 spaceId, uint256 given);
    error EntriesPaused();
    error TooEarly(uint256 matchId, uint256 reclaimableAt);
    error TransferFailed(address to, uint256 amount);

    modifier onlyOperator() {
        if (msg.sender != operator) revert NotOperator(msg.sender);
        _;
    }

    modifier onlyAdmin() {
        if (msg.sender != admin) revert NotAdmin(msg.sender);
        _;
    }

    constructor(address initialOperator, address initialTreasury, uint64 reclaimAfterSeconds) {
        if (initialOperator == address(0) || initialTreasury == address(0)) revert ZeroAddress();
        if (reclaimAfterSeconds == 0) revert ZeroAmount();
        admin = msg.sender;
        operator = initialOperator;
        treasury = initialTreasury;
        reclaimAfter = reclaimAfterSeconds;
        emit AdminChanged(address(0), msg.sender);
        emit OperatorChanged(address(0), initialOperator);
        emit TreasuryChanged(address(0), initialTreasury);
    }

    /// @notice The fee asset: the ERC-20 token balances are held in, or the zero
    /// address for ETH.
    function feeToken() public view virtual returns (address);

    /// @notice Sends `amount` of the sender's own balance back to the sender.
    function withdraw(uint256 amount) external {
        if (amount == 0) revert ZeroAmount();
        uint256 available = balanceOf[msg.sender];
        if (available < amount) revert InsufficientBalance(msg.sender, available, amount);
        uint256 balance = available - amount;
        balanceOf[msg.sender] = balance;
        emit Withdrawn(msg.sender, amount, balance);
        _payOut(msg.sender, amount);
    }

    /// Adds `amount`, which the contract has just received, to `user`'s balance.
    function _credit(address user, uint256 amount) internal {
        if (amount == 0) revert ZeroAmount();
        uint256 balance = balanceOf[user] + amount;
        balanceOf[user] = balance;
        emit Deposited(user, amount, balance);
    }

    /// Sends `amount` of the fee asset out of the contract to `to`, or reverts.
    function _payOut(address to, uint256 amount) internal virtual;

    /// @notice Declares (or changes) the rake of Space `spaceId`, in basis points of a
    /// pot. Matches already open keep the rake they opened with.
    function declareSpace(uint256 spaceId, uint256 rakeBps) external onlyAdmin {
        if (spaceId > type(uint32).max) revert SpaceIdTooLarge(spaceId);
        if (rakeBps > BPS) revert RakeTooLarge(rakeBps);
        spaceTerms[spaceId] = SpaceTerms(true, uint16(rakeBps));
        emit SpaceDeclared(spaceId, rakeBps);
    }

    /// @notice Moves `fee` from `user`'s balance into the escrow of `matchId`, a match
    /// of Space `spaceId`. The first lock opens the match under that Space's rake.
    function lockFee(uint256 matchId, uint256 spaceId, address user, uint256 fee) external onlyOperator {
        if (paused) revert EntriesPaused();
        if (fee == 0) revert ZeroAmount();
        if (fee > type(uint96).max) revert FeeTooLarge(fee);
        Escrow memory escrow = escrowOf[matchId];
        if (escrow.status == MatchStatus.None) {
            SpaceTerms memory terms = spaceTerms[spaceId];
            if (!terms.declared) revert SpaceNotDeclared(spaceId);
            escrow.openedAt = uint64(block.timestamp);
            escrow.spaceId = uint32(spaceId);
            escrow.rakeBps = terms.rakeBps;
            escrow.status = MatchStatus.Open;
        } else if (escrow.status != MatchStatus.Open) {
            revert MatchClosed(matchId, escrow.status);
        } else if (escrow.spaceId != spaceId) {
            revert SpaceMismatch(matchId, escrow.spaceId, spaceId);
        }
        uint256 available = balanceOf[user];
        if (available < fee) revert InsufficientBalance(user, available, fee);
        balanceOf[user] = available - fee;
        escrow.held += uint128(fee);
        escrowOf[matchId] = escrow;
        entries[matchId].push(Entry(user, uint96(fee)));
        emit FeeLocked(matchId, user, fee, escrow.held);
    }

    /// @notice Pays `amounts[i]` to `payees[i]` out of the pot of `matchId`, credits the
    /// rake to the treasury, stores `resultRoot` and closes the match. `payees` must be
    /// the match's entrants in the order their fees were locked (`entryAt`), and the
    /// amounts must add up to the pot minus the Space's rake, less at most one wei per
    /// entrant of rounding dust.
    function settle(uint256 matchId, address[] calldata payees, uint256[] calldata amounts, bytes32 resultRoot)
        external
        onlyOperator
    {
        if (payees.length != amounts.length) revert LengthMismatch(payees.length, amounts.length);
        Escrow storage escrow = escrowOf[matchId];
        if (escrow.status != MatchStatus.Open) revert MatchNotOpen(matchId, escrow.status);
        Entry[] storage locked = entries[matchId];
        uint256 count = locked.length;
        if (payees.length != count) revert EntrantCountMismatch(matchId, count, payees.length);
        uint256 pot = escrow.held;
        uint256 prize = pot - (pot * escrow.rakeBps) / BPS;
        uint256 paid = _pay(matchId, payees, amounts, locked, prize);
        if (prize - paid > count) revert PayoutBelowPrize(matchId, prize, paid);
        escrow.held = 0;
        escrow.status = MatchStatus.Settled;
        resultRootOf[matchId] = resultRoot;
        uint256 toTreasury = pot - paid;
        if (toTreasury != 0) balanceOf[treasury] += toTreasury;
        emit MatchSettled(matchId, resultRoot, paid, treasury, toTreasury);
    }

    /// @notice Returns every fee locked in `matchId` to the balance it came from.
    function refund(uint256 matchId) external onlyOperator {
        _refund(matchId);
    }

    /// @notice An entrant of `matchId` returns every fee locked in it to the balance it
    /// came from, once `reclaimAfter` seconds have passed since its first lock without a
    /// settlement or refund.
    function reclaim(uint256 matchId) external {
        Escrow storage escrow = escrowOf[matchId];
        if (escrow.status != MatchStatus.Open) revert MatchNotOpen(matchId, escrow.status);
        uint256 at = uint256(escrow.openedAt) + reclaimAfter;
        if (block.timestamp < at) revert TooEarly(matchId, at);
        Entry[] storage locked = entries[matchId];
        uint256 count = locked.length;
        bool entrant;
        for (uint256 i; i < count; ++i) {
            if (locked[i].user == msg.sender) {
                entrant = true;
                break;
            }
        }
        if (!entrant) revert NotEntrant(matchId, msg.sender);
        _refund(matchId);
        emit MatchReclaimed(matchId, msg.sender);
    }

    /// @notice Stores the result root of a match that held no fees (a free match) and
    /// closes its id, so that every match's result is on chain.
    function anchorResult(uint256 matchId, bytes32 resultRoot) external onlyOperator {
        Escrow storage escrow = escrowOf[matchId];
        if (escrow.status != MatchStatus.None) revert MatchExists(matchId, escrow.status);
        escrow.status = MatchStatus.Settled;
        resultRootOf[matchId] = resultRoot;
        emit ResultAnchored(matchId, resultRoot);
    }

    /// @notice Replaces the operator.
    function setOperator(address newOperator) external onlyAdmin {
        if (newOperator == address(0)) revert ZeroAddress();
        emit OperatorChanged(operator, newOperator);
        operator = newOperator;
    }

    /// @notice Replaces the treasury.
    function setTreasury(address newTreasury) external onlyAdmin {
        if (newTreasury == address(0)) revert ZeroAddress();
        emit TreasuryChanged(treasury, newTreasury);
        treasury = newTreasury;
    }

    /// @notice Hands the admin role to `newAdmin`.
    function setAdmin(address newAdmin) external onlyAdmin {
        if (newAdmin == address(0)) revert ZeroAddress();
        emit AdminChanged(admin, newAdmin);
        admin = newAdmin;
    }

    /// @notice Stops (`true`) or resumes (`false`) the locking of new fees. Settling,
    /// refunds, reclaims, deposits and withdrawals go on while paused.
    function setPaused(bool value) external onlyAdmin {
        paused = value;
        emit PausedSet(value);
    }

    /// @notice How many fees are locked in `matchId`.
    function entryCount(uint256 matchId) external view returns (uint256) {
        return entries[matchId].length;
    }

    /// @notice The `index`-th fee locked in `matchId`.
    function entryAt(uint256 matchId, uint256 index) external view returns (address user, uint256 fee) {
        Entry memory entry = entries[matchId][index];
        return (entry.user, entry.fee);
    }

    /// Credits `amounts[i]` to `payees[i]`, each of which must be the `i`-th entrant, and
    /// returns the sum, refusing any sum over `prize`.
    function _pay(
        uint256 matchId,
        address[] calldata payees,
        uint256[] calldata amounts,
        Entry[] storage locked,
        uint256 prize
    ) private returns (uint256 paid) {
        uint256 count = payees.length;
        for (uint256 i; i < count; ++i) {
            address payee = payees[i];
            if (payee != locked[i].user) revert NotEntrant(matchId, payee);
            uint256 amount = amounts[i];
            // `paid <= prize` holds here, so the subtraction cannot underflow and the
            // comparison rejects any amount that would overflow the running sum.
            if (amount > prize - paid) revert PayoutExceedsPrize(matchId, prize);
            if (amount != 0) {
                paid += amount;
                balanceOf[payee] += amount;
            }
        }
    }

    function _refund(uint256 matchId) private {
        Escrow storage escrow = escrowOf[matchId];
        if (escrow.status != MatchStatus.Open) revert MatchNotOpen(matchId, escrow.status);
        uint256 pot = escrow.held;
        escrow.held = 0;
        escrow.status = MatchStatus.Refunded;
        Entry[] storage locked = entries[matchId];
        uint256 count = locked.length;
        for (uint256 i; i < count; ++i) {
            Entry memory entry = locked[i];
            balanceOf[entry.user] += entry.fee;
        }
        emit MatchRefunded(matchId, pot, count);
    }
}
