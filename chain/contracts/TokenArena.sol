// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.26;

import {ArenaEscrow} from "./ArenaEscrow.sol";

/// The part of ERC-20 this contract uses.
interface IERC20 {
    function balanceOf(address account) external view returns (uint256);
    function transfer(address to, uint256 amount) external returns (bool);
    function transferFrom(address from, address to, uint256 amount) external returns (bool);
}

/// @title TokenArena: the RLFC Arena escrow with entry fees in one ERC-20 token (a
/// stablecoin such as USDC, say).
/// @notice Balances, fees and payouts are in the token's smallest unit. A user first
/// `approve`s this contract on the token, then calls `deposit(amount)`. The escrow rules
/// are `ArenaEscrow`'s, the same as the ETH `Arena`'s. A deposit credits what the
/// contract actually received, so a token that takes a fee on transfer cannot leave
/// the contract owing more than it holds, and a deposit cannot be re-entered (a token
/// with transfer hooks could otherwise call back into `deposit` or `withdraw` between
/// the two balance readings). Tokens whose balances change by themselves (rebasing
/// tokens) are not supported.
contract TokenArena is ArenaEscrow {
    /// The fee token.
    address public immutable token;

    /// The transient storage slot that marks a call to the token in progress:
    /// keccak256("rlfc.TokenArena.lock").
    bytes32 private constant LOCK = 0xae697861e24a86e475334d6ea610117c21c6955ef05924ba58d56144e1eedd1c;

    /// The token refused or failed a transfer.
    error TokenTransferFailed(address token, address from, address to, uint256 amount);
    /// The token called back into a deposit or withdrawal while a deposit was taking
    /// its tokens.
    error Reentered();

    constructor(address initialOperator, address initialTreasury, uint64 reclaimAfterSeconds, address feeAsset)
        ArenaEscrow(initialOperator, initialTreasury, reclaimAfterSeconds)
    {
        if (feeAsset == address(0) || feeAsset.code.length == 0) revert ZeroAddress();
        token = feeAsset;
    }

    /// @notice The fee token.
    function feeToken() public view override returns (address) {
        return token;
    }

    /// @notice Moves `amount` of the token from the sender (who must have approved this
    /// contract for at least that much) into the sender's balance here.
    function deposit(uint256 amount) external {
        if (amount == 0) revert ZeroAmount();
        _enter();
        uint256 before = IERC20(token).balanceOf(address(this));
        _call(abi.encodeCall(IERC20.transferFrom, (msg.sender, address(this), amount)), msg.sender, address(this), amount);
        uint256 received = IERC20(token).balanceOf(address(this)) - before;
        bytes32 slot = LOCK;
        assembly {
            tstore(slot, 0)
        }
        _credit(msg.sender, received);
    }

    function _payOut(address to, uint256 amount) internal override {
        _enter();
        _call(abi.encodeCall(IERC20.transfer, (to, amount)), address(this), to, amount);
        bytes32 slot = LOCK;
        assembly {
            tstore(slot, 0)
        }
    }

    /// Marks a token call in progress (in transient storage, gone at the end of the
    /// transaction), refusing a call that arrives while one is.
    function _enter() private {
        bytes32 slot = LOCK;
        bool busy;
        assembly {
            busy := tload(slot)
        }
        if (busy) revert Reentered();
        assembly {
            tstore(slot, 1)
        }
    }

    /// Calls the token and accepts success with no return data (as some older tokens
    /// answer) or with `true`.
    function _call(bytes memory data, address from, address to, uint256 amount) private {
        (bool ok, bytes memory ret) = token.call(data);
        if (!ok || (ret.length != 0 && (ret.length != 32 || !abi.decode(ret, (bool))))) {
            revert TokenTransferFailed(token, from, to, amount);
        }
    }
}
